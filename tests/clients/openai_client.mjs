// The npm `openai` package against velm-edge serve, as Scrypted and camera.ui scripts use it.
// node openai_client.mjs BASE_URL MODEL IMAGE [API_KEY] -> one JSON object on stdout.
import { readFile } from "node:fs/promises";
import OpenAI from "openai";

const [baseURL, model, imagePath, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: apiKey || "no-key" });
const url = `data:image/jpeg;base64,${(await readFile(imagePath)).toString("base64")}`;
const messages = [{ role: "user", content: [{ type: "text", text: "Describe the image." },
                                            { type: "image_url", image_url: { url, detail: "low" } }] }];
const out = {};
out.models = (await client.models.list()).data.map((m) => m.id);
const completion = await client.chat.completions.create({ model, messages });
out.chat = completion.choices[0].message.content;
out.usage = completion.usage;
let streamed = "";
for await (const chunk of await client.chat.completions.create({ model, messages, stream: true })) {
  streamed += chunk.choices[0]?.delta?.content || "";
}
out.chat_stream = streamed;
try {
  await client.chat.completions.create({ model: "gpt-4o", messages });
} catch (e) {
  out.unknown_model = { status: e.status, code: e.code };
}
console.log(JSON.stringify(out));
