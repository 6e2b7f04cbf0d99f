// Caption an image with a running `velm-edge serve`, from Node.js 18+ (built-in fetch, no packages).
//   velm-edge serve &
//   node examples/caption_http.mjs photo.jpg        # prints the caption
// VELM_URL overrides the address; VELM_TOKEN is sent as a bearer token when set.
import { readFile } from "node:fs/promises";

const url = (process.env.VELM_URL || "http://127.0.0.1:8090") + "/v1/caption?beam_size=3";
const headers = { "Content-Type": "application/octet-stream" };
if (process.env.VELM_TOKEN) headers.Authorization = `Bearer ${process.env.VELM_TOKEN}`;

const response = await fetch(url, { method: "POST", headers, body: await readFile(process.argv[2]) });
const answer = await response.json();
if (!response.ok) {
  console.error(`error ${answer.status}: ${answer.error}`);
  process.exit(1);
}
console.log(answer.text);
