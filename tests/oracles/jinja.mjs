// Renders chat-template cases with @huggingface/jinja (an independent Jinja implementation, the one transformers.js uses).
// stdin: [{"template": "...", "vars": {...}}, ...]; stdout: [{"output": "..."} | {"error": "..."}, ...] in the same order.
import { Template } from "@huggingface/jinja";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const cases = JSON.parse(input);
const results = cases.map(({ template, vars }) => {
  try {
    return { output: new Template(template).render(vars) };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
