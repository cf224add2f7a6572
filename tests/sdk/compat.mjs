// OpenAI's official Node SDK, unchanged, against a live AlignHub: ALIGNHUB_URL (the server), ALIGNHUB_KEY (a trainer
// key). Exits non-zero with the first broken expectation. Run by tests/AlignHub.Tests/SdkCompatibilityTests.cs.
import OpenAI, { toFile, NotFoundError, AuthenticationError, BadRequestError, PermissionDeniedError, ConflictError } from 'openai';

const baseURL = process.env.ALIGNHUB_URL + '/v1';
const client = new OpenAI({ baseURL, apiKey: process.env.ALIGNHUB_KEY, maxRetries: 0, timeout: 60_000 });
const check = (cond, what) => { if (!cond) throw new Error('expectation failed: ' + what); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(id, done, what, ms = 120_000) {
  const until = Date.now() + ms;
  let job;
  while (Date.now() < until) {
    job = await client.fineTuning.jobs.retrieve(id);
    if (done(job)) return job;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(job)}`);
}

// Files: a supervised file (chat rows) and a preference file (OpenAI's DPO rows).
const names = ['Ada', 'Alan', 'Grace', 'Linus', 'Ken', 'Barbara'];
const chat = Array.from({ length: 32 }, (_, i) => JSON.stringify({ messages: [
  { role: 'user', content: `Greet ${names[i % 6]}.` }, { role: 'assistant', content: `Hello, ${names[i % 6]}!` }] })).join('\n');
const prefs = Array.from({ length: 32 }, (_, i) => JSON.stringify({
  input: { messages: [{ role: 'user', content: `Greet ${names[i % 6]}.` }] },
  preferred_output: [{ role: 'assistant', content: `Hello, ${names[i % 6]}!` }],
  non_preferred_output: [{ role: 'assistant', content: 'Go away.' }] })).join('\n');
const sftFile = await client.files.create({ file: await toFile(Buffer.from(chat), 'chat.jsonl'), purpose: 'fine-tune' });
check(sftFile.id.startsWith('file-') && sftFile.object === 'file' && sftFile.purpose === 'fine-tune', 'file object ' + JSON.stringify(sftFile));
const prefFile = await client.files.create({ file: await toFile(Buffer.from(prefs), 'prefs.jsonl'), purpose: 'fine-tune' });
check((await client.files.retrieve(prefFile.id)).filename === 'prefs.jsonl', 'files.retrieve');

// A bad file is a 400 the SDK raises as BadRequestError with OpenAI's error body.
try {
  await client.files.create({ file: await toFile(Buffer.from('{"nope": 1}\n'), 'bad.jsonl'), purpose: 'fine-tune' });
  throw new Error('a bad file was accepted');
} catch (e) { check(e instanceof BadRequestError && e.status === 400 && typeof e.error?.message === 'string', 'bad file error ' + e); }

// A supervised job and a DPO job.
const sft = await client.fineTuning.jobs.create({
  model: 'alignhub/tiny', training_file: sftFile.id, seed: 1, suffix: 'sdk',
  method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 40, batch_size: 4 } } },
});
check(sft.id.startsWith('ftjob-') && sft.object === 'fine_tuning.job' && ['validating_files', 'queued', 'running'].includes(sft.status), 'job object ' + JSON.stringify(sft));
check(sft.method?.type === 'supervised' && sft.training_file === sftFile.id && sft.seed === 1, 'job fields ' + JSON.stringify(sft));
const dpo = await client.fineTuning.jobs.create({
  model: 'alignhub/tiny', training_file: prefFile.id, method: { type: 'dpo', dpo: { hyperparameters: { beta: 0.2, n_epochs: 1, batch_size: 8 } } },
});
check(dpo.method?.type === 'dpo' && dpo.method?.dpo?.hyperparameters?.beta === 0.2, 'dpo job ' + JSON.stringify(dpo.method));

// List with pagination: one job per page, newest first; the SDK follows `after` itself.
const first = await client.fineTuning.jobs.list({ limit: 1 });
check(first.data.length === 1 && first.data[0].id === dpo.id && first.has_more === true, 'first page ' + JSON.stringify(first.data.map((j) => j.id)));
const seen = [];
for await (const j of client.fineTuning.jobs.list({ limit: 1 })) seen.push(j.id);
check(seen.includes(sft.id) && seen.includes(dpo.id) && new Set(seen).size === seen.length, 'auto-pagination ' + seen);

// Pause the supervised job once it trains, resume it, and let it finish.
await waitFor(sft.id, (j) => j.status === 'running', 'running');
const paused = await client.fineTuning.jobs.pause(sft.id);
check(paused.status === 'paused', 'pause ' + paused.status);
await sleep(1500);
check((await client.fineTuning.jobs.retrieve(sft.id)).status === 'paused', 'stays paused');
const resumed = await client.fineTuning.jobs.resume(sft.id);
check(['queued', 'running'].includes(resumed.status), 'resume ' + resumed.status);
const done = await waitFor(sft.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 'the job to end', 240_000);
check(done.status === 'succeeded' && done.fine_tuned_model?.startsWith('ft:alignhub/tiny:') && typeof done.finished_at === 'number', 'finished ' + JSON.stringify(done));

// Chat completions from the fine-tuned model: non-streamed and streamed agree at temperature 0, and equal a generate
// job's greedy text for the same prompt (the model's chat format, the same tokens).
const model = done.fine_tuned_model;
const messages = [{ role: 'user', content: 'Greet Ada.' }];
const whole = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 24 });
check(whole.object === 'chat.completion' && whole.id.startsWith('chatcmpl-') && whole.model === model && whole.choices.length === 1, 'chat completion ' + JSON.stringify(whole));
const answer = whole.choices[0].message.content;
check(whole.choices[0].message.role === 'assistant' && typeof answer === 'string' && answer.length > 0, 'assistant message ' + JSON.stringify(whole.choices[0]));
check(['stop', 'length'].includes(whole.choices[0].finish_reason), 'finish_reason ' + whole.choices[0].finish_reason);
check(whole.usage.prompt_tokens > 0 && whole.usage.completion_tokens > 0 && whole.usage.total_tokens === whole.usage.prompt_tokens + whole.usage.completion_tokens, 'usage ' + JSON.stringify(whole.usage));
const stream = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 24, stream: true, stream_options: { include_usage: true } });
let streamed = '', chunks = 0, usage = null, finish = null;
for await (const chunk of stream) {
  chunks++;
  check(chunk.object === 'chat.completion.chunk' && chunk.id.startsWith('chatcmpl-'), 'chunk ' + JSON.stringify(chunk));
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) { streamed += c.delta?.content ?? ''; if (c.finish_reason) finish = c.finish_reason; }
}
check(streamed === answer, `streamed "${streamed}" vs "${answer}"`);
check(chunks > 2 && finish === whole.choices[0].finish_reason && usage?.completion_tokens === whole.usage.completion_tokens, 'stream end ' + JSON.stringify({ chunks, finish, usage }));
const promptFile = await client.files.create({ file: await toFile(Buffer.from(JSON.stringify({ messages }) + '\n'), 'prompt.jsonl'), purpose: 'fine-tune' });
const gen = await client.fineTuning.jobs.create({ model, training_file: promptFile.id, method: { type: 'generate', generate: { hyperparameters: { n: 1, temperature: 0, max_new_tokens: 24 } } } });
const genDone = await waitFor(gen.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 'the generate job');
check(genDone.status === 'succeeded' && genDone.result_files.length === 1, 'generate job ' + JSON.stringify(genDone));
const generated = JSON.parse((await (await client.files.content(genDone.result_files[0])).text()).trim().split('\n')[0]);
check(generated.completions[0].text === answer, `generate job "${generated.completions[0].text}" vs chat "${answer}"`);
// Log-probs, several choices, seeded sampling, and the legacy completions endpoint.
const lp = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 5, logprobs: true, top_logprobs: 2 });
const content = lp.choices[0].logprobs?.content;
check(Array.isArray(content) && content.length > 0 && content.every((t) => typeof t.logprob === 'number' && t.logprob <= 0 && t.top_logprobs.length === 2), 'logprobs ' + JSON.stringify(lp.choices[0].logprobs));
const seeded = (await client.chat.completions.create({ model, messages, temperature: 1, n: 3, seed: 7, max_tokens: 12 })).choices.map((c) => c.message.content);
const again = (await client.chat.completions.create({ model, messages, temperature: 1, n: 3, seed: 7, max_tokens: 12 })).choices.map((c) => c.message.content);
check(seeded.length === 3 && JSON.stringify(seeded) === JSON.stringify(again), 'seeded choices ' + JSON.stringify([seeded, again]));
const legacy = await client.completions.create({ model, prompt: 'Greet', max_tokens: 6, temperature: 0 });
check(legacy.object === 'text_completion' && typeof legacy.choices[0].text === 'string' && legacy.usage.completion_tokens > 0, 'completions ' + JSON.stringify(legacy));
try { await client.chat.completions.create({ model, messages, temperature: 3 }); throw new Error('temperature 3 accepted'); }
catch (e) { check(e instanceof BadRequestError && e.error?.param === 'temperature', 'bad temperature ' + JSON.stringify(e.error)); }
try { await client.chat.completions.create({ model: 'no-such-model', messages }); throw new Error('a missing model answered'); }
catch (e) { check(e instanceof NotFoundError && e.status === 404, 'missing model ' + e); }

// Events (newest first, paginated) and checkpoints.
const events = [];
for await (const e of client.fineTuning.jobs.listEvents(sft.id, { limit: 5 })) events.push(e);
check(events.length > 5 && events.every((e) => e.object === 'fine_tuning.job.event' && e.id.startsWith('ftevent-')), 'events');
check(events.some((e) => /paused/i.test(e.message)) && events.some((e) => /resumed/i.test(e.message)), 'pause and resume events');
const ckpts = await client.fineTuning.jobs.checkpoints.list(sft.id);
check(ckpts.data.length > 0 && ckpts.data.every((c) => c.id.startsWith('ftckpt-') && c.object === 'fine_tuning.job.checkpoint'
  && c.fine_tuning_job_id === sft.id && typeof c.step_number === 'number' && c.fine_tuned_model_checkpoint.includes(':ckpt-step-')), 'checkpoints ' + JSON.stringify(ckpts.data));

// Cancel the DPO job (or see it already done), and cancelling a finished job is a 409.
const cancelled = await client.fineTuning.jobs.cancel(dpo.id).catch((e) => e);
check(cancelled.status === 'cancelled' || cancelled instanceof ConflictError, 'cancel ' + JSON.stringify(cancelled));
try { await client.fineTuning.jobs.cancel(sft.id); throw new Error('cancelled a finished job'); }
catch (e) { check(e instanceof ConflictError && e.status === 409, 'cancel finished ' + e); }

// Graders (OpenAI's alpha endpoints) and a reinforcement job graded by one, on rows with an answer field.
const grader = { type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.answer}}', operation: 'eq' };
const validated = await client.fineTuning.alpha.graders.validate({ grader });
check(validated.grader?.type === 'string_check', 'graders.validate ' + JSON.stringify(validated));
const ran = await client.fineTuning.alpha.graders.run({ grader, model_sample: '42', item: { answer: '42' } });
check(ran.reward === 1 && ran.metadata?.name === 'exact' && ran.metadata?.errors?.other_error === false, 'graders.run ' + JSON.stringify(ran));
check((await client.fineTuning.alpha.graders.run({ grader, model_sample: '41', item: { answer: '42' } })).reward === 0, 'graders.run miss');
try { await client.fineTuning.alpha.graders.validate({ grader: { ...grader, operation: 'about' } }); throw new Error('a bad grader validated'); }
catch (e) { check(e instanceof BadRequestError && e.error?.param === 'grader.operation', 'bad grader ' + JSON.stringify(e.error)); }
const rows = Array.from({ length: 16 }, (_, i) => JSON.stringify({ prompt: `${i}+${i}=`, answer: String(2 * i) })).join('\n');
const rlFile = await client.files.create({ file: await toFile(Buffer.from(rows), 'problems.jsonl'), purpose: 'fine-tune' });
const rft = await client.fineTuning.jobs.create({
  model: 'alignhub/tiny', training_file: rlFile.id, seed: 3,
  method: { type: 'reinforcement', reinforcement: { grader, hyperparameters: { n_epochs: 1, batch_size: 8, eval_interval: 'auto', reasoning_effort: 'low', compute_multiplier: 'auto' } } },
});
check(rft.method?.type === 'reinforcement' && rft.method?.reinforcement?.grader?.type === 'string_check', 'reinforcement job ' + JSON.stringify(rft.method));
const rftDone = await waitFor(rft.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 'the reinforcement job to end', 240_000);
check(rftDone.status === 'succeeded' && rftDone.fine_tuned_model?.startsWith('ft:alignhub/tiny:'), 'reinforcement finished ' + JSON.stringify(rftDone));

// Errors as the SDK expects them.
try { await client.fineTuning.jobs.retrieve('ftjob-doesnotexist'); throw new Error('found a missing job'); }
catch (e) { check(e instanceof NotFoundError && e.status === 404 && e.error?.type === 'not_found_error', 'not found ' + e); }
try { await client.fineTuning.jobs.create({ model: 'no-such-model', training_file: sftFile.id }); throw new Error('bad model accepted'); }
catch (e) { check(e instanceof BadRequestError && e.error?.param === 'model', 'validation error ' + JSON.stringify(e.error)); }
const stranger = new OpenAI({ baseURL, apiKey: 'ahk-not-a-key', maxRetries: 0 });
try { await stranger.fineTuning.jobs.list(); throw new Error('a wrong key was accepted'); }
catch (e) { check(e instanceof AuthenticationError && e.status === 401, 'wrong key ' + e); }
if (process.env.ALIGNHUB_VIEWER_KEY) {
  const viewer = new OpenAI({ baseURL, apiKey: process.env.ALIGNHUB_VIEWER_KEY, maxRetries: 0 });
  check((await viewer.fineTuning.jobs.retrieve(sft.id)).id === sft.id, 'viewer reads');
  check((await viewer.chat.completions.create({ model: done.fine_tuned_model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 })).choices.length === 1, 'viewer chats');
  try { await viewer.fineTuning.jobs.cancel(sft.id); throw new Error('a viewer cancelled'); }
  catch (e) { check(e instanceof PermissionDeniedError && e.status === 403, 'viewer write ' + e); }
}
console.log('openai SDK compatibility: ok');
