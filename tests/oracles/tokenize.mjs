// Encodes and decodes texts with @huggingface/tokenizers (tokenizers.js, the tokenizer library transformers.js uses), an
// independent implementation of Hugging Face's tokenizer.json, on a model's own tokenizer.json and tokenizer_config.json;
// conversations are rendered with the folder's chat template by @huggingface/jinja and encoded without special tokens, as
// transformers' apply_chat_template(tokenize=True) does.
// stdin: {"folder": "...", "texts": ["..."], "chats": [{"messages": [...], "add_generation_prompt": bool}]}
// stdout: {"texts": [{"with_special": [...], "without": [...], "decoded": "..."}], "chats": [{"text": "...", "ids": [...]}]}
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { folder, texts, chats } = JSON.parse(input);
const json = JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8"));
const config = JSON.parse(readFileSync(join(folder, "tokenizer_config.json"), "utf8"));
const tokenizer = new Tokenizer(json, config);
const token = (v) => (v && typeof v === "object" ? v.content : v) ?? "";
const out = {
  texts: texts.map((text) => {
    const without = tokenizer.encode(text, { add_special_tokens: false }).ids;
    return { with_special: tokenizer.encode(text).ids, without, decoded: without.length ? tokenizer.decode(without, { skip_special_tokens: true }) : "" };
  }),
  chats: (chats ?? []).map(({ messages, add_generation_prompt }) => {
    const text = new Template(config.chat_template).render({
      messages, add_generation_prompt, bos_token: token(config.bos_token), eos_token: token(config.eos_token),
    });
    return { text, ids: tokenizer.encode(text, { add_special_tokens: false }).ids };
  }),
};
process.stdout.write(JSON.stringify(out));
