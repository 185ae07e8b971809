// Conformance of `ferry serve` with the official OpenAI Node client.
//
// Install the client once, outside the source tree (build/ is git-ignored):
//   mkdir -p build/clients-node && cp tests/clients/package.json build/clients-node/ &&
//   (cd build/clients-node && npm install --no-audit --no-fund --no-package-lock)
// Run (from the repository root, against a running server):
//   BASE_URL=http://127.0.0.1:18090/v1 API_KEY=sekrit MODEL=stories260K.bin \
//   FERRY_NODE_MODULES=build/clients-node/node_modules node tests/clients/openai_conformance.mjs
// FERRY_NODE_MODULES defaults to build/clients-node/node_modules beside this checkout.
// Prints "ok - ..." per check; the first failure prints "FAIL - ..." and exits 1.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modules = resolve(process.env.FERRY_NODE_MODULES || join(here, '..', '..', 'build', 'clients-node', 'node_modules'));
const entry = join(modules, 'openai', 'index.mjs');
if (!existsSync(entry)) {
  console.log(`FAIL - the openai package is not installed at ${modules} (see the install command at the top of ${fileURLToPath(import.meta.url)})`);
  process.exit(1);
}
const { default: OpenAI } = await import(pathToFileURL(entry).href);

const BASE_URL = process.env.BASE_URL || 'http://127.0.0.1:18090/v1';
const API_KEY = process.env.API_KEY || 'none';
const MODEL = process.env.MODEL;
if (!MODEL) {
  console.log('FAIL - set MODEL (the model id, e.g. stories260K.bin)');
  process.exit(1);
}

const client = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0, timeout: 60_000 });

function fail(what, details) {
  console.log(`FAIL - ${what}`);
  if (details !== undefined) console.log(typeof details === 'string' ? details : JSON.stringify(details, null, 2));
  process.exit(1);
}
function check(cond, what, details) {
  if (!cond) fail(what, details);
  console.log(`ok - ${what}`);
}
// Runs fn, which must throw an instance of cls with the given status.
async function expectError(what, cls, status, fn) {
  let result;
  try {
    result = await fn();
  } catch (e) {
    if (e instanceof cls && e.status === status) {
      console.log(`ok - ${what} (${e.constructor.name} ${e.status}: ${e.message})`);
      return e;
    }
    fail(what, `expected ${cls.name} with status ${status}, got ${e?.constructor?.name} status ${e?.status}: ${e?.message}`);
  }
  fail(what, { expected: `${cls.name} ${status}`, got: result });
}
const usageConsistent = (u, max) =>
  u && Number.isInteger(u.prompt_tokens) && Number.isInteger(u.completion_tokens) && u.prompt_tokens > 0 &&
  u.completion_tokens >= 0 && u.completion_tokens <= max && u.total_tokens === u.prompt_tokens + u.completion_tokens;

const messages = [
  { role: 'system', content: 'You are a storyteller.' },
  { role: 'user', content: 'Tell me a story about a cat.' },
];
const prompt = 'Once upon a time';

try {
  // --- models ---
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  check(ids.includes(MODEL), `models.list contains ${MODEL}`, ids);
  const one = await client.models.retrieve(MODEL);
  check(one.id === MODEL && one.object === 'model', 'models.retrieve returns the model', one);

  // --- chat, non-streaming ---
  const chatReq = { model: MODEL, messages, temperature: 0, max_tokens: 20 };
  const chat = await client.chat.completions.create(chatReq);
  const c0 = chat.choices?.[0];
  check(chat.object === 'chat.completion' && chat.choices.length === 1, 'chat: one choice, object chat.completion', chat);
  check(c0.message.role === 'assistant', 'chat: message.role is assistant', c0);
  check(typeof c0.message.content === 'string', 'chat: message.content is a string', c0);
  check(['stop', 'length'].includes(c0.finish_reason), `chat: finish_reason is stop or length (${c0.finish_reason})`, c0);
  check(usageConsistent(chat.usage, 20), 'chat: usage consistent (total = prompt + completion, completion <= 20)', chat.usage);

  // --- chat, streaming with usage ---
  const stream = await client.chat.completions.create({ ...chatReq, stream: true, stream_options: { include_usage: true } });
  let streamed = '';
  let role = null;
  let finish = null;
  let usageChunk = null;
  let afterUsage = 0;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.object !== 'chat.completion.chunk') fail('chat stream: object is chat.completion.chunk', chunk);
    if (usageChunk) afterUsage++;
    if (chunk.usage) {
      if (chunk.choices.length !== 0) fail('chat stream: the usage chunk has empty choices', chunk);
      usageChunk = chunk;
      continue;
    }
    const ch = chunk.choices[0];
    if (ch.delta?.role) role = ch.delta.role;
    if (ch.delta?.content) streamed += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  check(role === 'assistant', 'chat stream: a delta carries role assistant');
  check(streamed === c0.message.content, 'chat stream: concatenated deltas equal the non-streaming content',
    { streamed, full: c0.message.content });
  check(finish === c0.finish_reason, `chat stream: finish_reason ${finish} matches non-streaming`);
  check(usageChunk !== null && afterUsage === 0, 'chat stream: the last chunk carries usage', { chunks, afterUsage });
  check(usageConsistent(usageChunk.usage, 20) && usageChunk.usage.completion_tokens === chat.usage.completion_tokens &&
    usageChunk.usage.prompt_tokens === chat.usage.prompt_tokens, 'chat stream: usage equals the non-streaming usage',
    { stream: usageChunk.usage, full: chat.usage });

  // --- completions, non-streaming and streaming ---
  const cmplReq = { model: MODEL, prompt, temperature: 0, max_tokens: 30 };
  const cmpl = await client.completions.create(cmplReq);
  const k0 = cmpl.choices?.[0];
  check(cmpl.object === 'text_completion' && typeof k0?.text === 'string' && k0.text.length > 0,
    'completions: text_completion with non-empty text', cmpl);
  check(['stop', 'length'].includes(k0.finish_reason), `completions: finish_reason is stop or length (${k0.finish_reason})`, k0);
  check(usageConsistent(cmpl.usage, 30), 'completions: usage consistent', cmpl.usage);
  const cstream = await client.completions.create({ ...cmplReq, stream: true, stream_options: { include_usage: true } });
  let ctext = '';
  let cfinish = null;
  let cusage = null;
  const pieces = new Set();  // the streamed texts, to find a stop word that spans several
  for await (const chunk of cstream) {
    if (chunk.usage) cusage = chunk.usage;
    for (const ch of chunk.choices) {
      ctext += ch.text ?? '';
      pieces.add((ch.text ?? '').trim());
      if (ch.finish_reason) cfinish = ch.finish_reason;
    }
  }
  check(ctext === k0.text && cfinish === k0.finish_reason, 'completions: streaming text and finish_reason equal non-streaming',
    { streamed: ctext, full: k0.text, cfinish, finish: k0.finish_reason });
  check(cusage && cusage.total_tokens === cmpl.usage.total_tokens, 'completions stream: usage chunk equals non-streaming usage',
    { stream: cusage, full: cmpl.usage });

  // --- echo ---
  const echoed = await client.completions.create({ ...cmplReq, echo: true });
  check(echoed.choices[0].text === prompt + k0.text, 'completions: echo=true returns the prompt then the same completion',
    { echoed: echoed.choices[0].text, expected: prompt + k0.text });

  // --- seeded sampling ---
  const seeded = { model: MODEL, messages, temperature: 0.8, seed: 42, max_tokens: 30 };
  const s1 = await client.chat.completions.create(seeded);
  const s2 = await client.chat.completions.create(seeded);
  check(s1.choices[0].message.content === s2.choices[0].message.content,
    'chat: temperature 0.8 with seed 42 twice gives identical text', [s1.choices[0].message.content, s2.choices[0].message.content]);
  const t1 = await client.completions.create({ model: MODEL, prompt, temperature: 0.8, seed: 42, max_tokens: 30 });
  const t2 = await client.completions.create({ model: MODEL, prompt, temperature: 0.8, seed: 42, max_tokens: 30 });
  check(t1.choices[0].text === t2.choices[0].text, 'completions: temperature 0.8 with seed 42 twice gives identical text',
    [t1.choices[0].text, t2.choices[0].text]);

  // --- stop strings ---
  // A word of the temperature-0 output that is not at its start: the reply must end just before it.
  // Preferably one streamed in several pieces, so the server must hold back a partial match.
  const full = k0.text;
  const words = full.split(/[^A-Za-z]+/).filter((w) => w.length >= 3 && full.indexOf(w) > 0);
  const word = words.find((w) => !pieces.has(w)) ?? words[Math.floor(words.length / 2)];
  if (!word) fail('stop: no word of 3+ letters in the temperature-0 completion to stop at', full);
  const expected = full.slice(0, full.indexOf(word));
  const stopped = await client.completions.create({ ...cmplReq, stop: word });
  check(stopped.choices[0].text === expected && stopped.choices[0].finish_reason === 'stop',
    `completions: stop "${word}" ends the text before it with finish_reason stop`,
    { got: stopped.choices[0].text, finish: stopped.choices[0].finish_reason, expected });
  const sstream = await client.completions.create({ ...cmplReq, stop: [word], stream: true });
  let stext = '';
  let sfinish = null;
  for await (const chunk of sstream) {
    for (const ch of chunk.choices) {
      stext += ch.text ?? '';
      if (ch.finish_reason) sfinish = ch.finish_reason;
    }
  }
  check(stext === expected && sfinish === 'stop', `completions stream: stop "${word}" ends the text before it`,
    { got: stext, finish: sfinish, expected });
  const cfull = c0.message.content;
  const cword = cfull.split(/[^A-Za-z]+/).filter((w) => w.length >= 3).find((w) => cfull.indexOf(w) > 0);
  if (cword) {
    const cstopped = await client.chat.completions.create({ ...chatReq, stop: [cword] });
    check(cstopped.choices[0].message.content === cfull.slice(0, cfull.indexOf(cword)) &&
      cstopped.choices[0].finish_reason === 'stop', `chat: stop "${cword}" ends the content before it with finish_reason stop`,
      { got: cstopped.choices[0].message.content, finish: cstopped.choices[0].finish_reason });
  }

  // --- errors ---
  const wrong = new OpenAI({ baseURL: BASE_URL, apiKey: `${API_KEY}-wrong`, maxRetries: 0, timeout: 60_000 });
  await expectError('wrong API key: AuthenticationError 401', OpenAI.AuthenticationError, 401, () => wrong.models.list());
  await expectError('wrong API key on chat: AuthenticationError 401', OpenAI.AuthenticationError, 401,
    () => wrong.chat.completions.create(chatReq));
  const nf = await expectError('unknown model: NotFoundError 404', OpenAI.NotFoundError, 404,
    () => client.chat.completions.create({ ...chatReq, model: 'no-such-model' }));
  check(nf.code === 'model_not_found', `unknown model: error code model_not_found (${nf.code})`, nf.error);
  await expectError('models.retrieve unknown model: NotFoundError 404', OpenAI.NotFoundError, 404,
    () => client.models.retrieve('no-such-model'));
  const bad = await expectError('max_tokens "x": BadRequestError 400', OpenAI.BadRequestError, 400,
    () => client.chat.completions.create({ ...chatReq, max_tokens: 'x' }));
  check(bad.param === 'max_tokens' && bad.type === 'invalid_request_error', 'max_tokens "x": param and type set',
    { param: bad.param, type: bad.type });
  await expectError('completions with max_tokens "x": BadRequestError 400', OpenAI.BadRequestError, 400,
    () => client.completions.create({ ...cmplReq, max_tokens: 'x' }));
} catch (e) {
  fail(`unexpected error: ${e?.constructor?.name} ${e?.status ?? ''} ${e?.message}`, e?.stack);
}
console.log('all openai client checks passed');
process.exit(0);
