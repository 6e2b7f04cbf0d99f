// The npm `ollama` package against velm-edge serve: the calls Node-RED's and Home Assistant-style
// clients make.  node ollama_client.mjs URL MODEL IMAGE -> one JSON object on stdout.
import { readFile } from "node:fs/promises";
import { Ollama } from "ollama";

const [url, model, imagePath] = process.argv.slice(2);
const ollama = new Ollama({ host: url });
const image = await readFile(imagePath);
const out = {};
out.models = (await ollama.list()).models.map((m) => m.name);
out.capabilities = (await ollama.show({ model })).capabilities;
out.generate = (await ollama.generate({ model, prompt: "Describe the image.", images: [image] })).response;
let streamed = "";
for await (const part of await ollama.generate({ model, prompt: "x", images: [image.toString("base64")], stream: true })) {
  streamed += part.response;
}
out.generate_stream = streamed;
out.chat = (await ollama.chat({ model, messages: [{ role: "user", content: "What is this?", images: [image] }] }))
  .message.content;
streamed = "";
for await (const part of await ollama.chat({ model, stream: true,
                                             messages: [{ role: "user", content: "x", images: [image] }] })) {
  streamed += part.message.content;
}
out.chat_stream = streamed;
try {
  await ollama.generate({ model: "no-such-model", prompt: "x" });
} catch (e) {
  out.unknown_model = { status: e.status_code, error: e.error };
}
console.log(JSON.stringify(out));
