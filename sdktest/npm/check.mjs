// Usage: node check.mjs BASE_URL KEY MODEL PROMPT [extra-json]
// Runs the SDK's stream helper (which needs id, role, index and finish_reason on the chunks), a plain
// streamed create, and a non-stream create against the relay, and prints what each produced as JSON.
import OpenAI from "openai";

const [baseURL, apiKey, model, prompt, extra] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const body = { model, messages: [{ role: "user", content: prompt }], ...(extra ? JSON.parse(extra) : {}) };

const out = {};
const helper = client.chat.completions.stream({ ...body, stream_options: { include_usage: true } });
let deltas = "";
helper.on("content", (delta) => { deltas += delta; });
const final = await helper.finalChatCompletion();
out.helper = { content: final.choices[0].message.content, deltas, finish: final.choices[0].finish_reason, usage: final.usage ?? null };

let streamed = "";
let chunks = 0;
for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
  chunks++;
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
out.stream = { content: streamed, chunks };

const comp = await client.chat.completions.create(body);
out.create = { content: comp.choices[0].message.content, usage: comp.usage };
console.log(JSON.stringify(out));
