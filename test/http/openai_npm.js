// test/http: the official `openai` npm client against `viv serve`.
//   node openai_npm.js BASE_URL PROMPT MAX_TOKENS SEED
// Prints one JSON object: the model list, a completion, the same streamed,
// a completion with a stop string, and the error a bad request gets.
const path = require("path");
const OpenAI = require(path.join(process.env.NPM_DIR, "node_modules", "openai"));

async function main() {
  const [base, prompt, maxTokens, seed, stop] = process.argv.slice(2);
  const client = new OpenAI({ baseURL: base, apiKey: "sk-unused", maxRetries: 0, timeout: 60000 });
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  const req = {
    model: out.models[0],
    messages: [{ role: "user", content: prompt }],
    max_tokens: Number(maxTokens),
    temperature: 1,
    seed: Number(seed),
  };
  const r = await client.chat.completions.create(req);
  out.nonstream = { content: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: r.usage, object: r.object };
  const greedy = await client.chat.completions.create({ ...req, temperature: 0 });
  out.greedy = { content: greedy.choices[0].message.content, finish_reason: greedy.choices[0].finish_reason };
  const s = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let content = "", chunks = 0, finish = null, usage = null;
  for await (const ch of s) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    if (ch.choices.length) {
      content += ch.choices[0].delta.content || "";
      if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
    }
  }
  out.stream = { content, chunks, finish_reason: finish, usage };
  if (stop) {
    const st = await client.chat.completions.create({ ...req, stop: [stop] });
    out.stopped = { content: st.choices[0].message.content, finish_reason: st.choices[0].finish_reason };
    const ss = await client.chat.completions.create({ ...req, stop: stop, stream: true });
    let sc = "";
    for await (const ch of ss) if (ch.choices.length) sc += ch.choices[0].delta.content || "";
    out.stopped_stream = sc;
  }
  try {
    await client.chat.completions.create({ ...req, temperature: 7 });
    out.error = null;
  } catch (e) {
    out.error = { status: e.status, message: e.message, param: e.param, name: e.constructor.name };
  }
  console.log(JSON.stringify(out));
}
main().catch((e) => { console.error("openai_npm.js:", e); process.exit(1); });
