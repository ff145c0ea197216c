// Node's `ws` as a wss:// client (scripts/tls-clients.sh): trusts only the
// test CA given, sends a text, a binary and a 1 MiB message of each kind,
// checks each echo byte for byte, then closes with 1000 and expects 1000
// back. Exits non-zero with the reason on any difference.
//
// usage: node client.mjs wss://127.0.0.1:PORT/ CA.pem
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";

const [url, caFile] = process.argv.slice(2);
const fail = (why) => {
  console.error(`ws client: ${why}`);
  process.exit(1);
};
setTimeout(() => fail("timed out after 20 s"), 20_000).unref();

const big = randomBytes(1 << 20);
const messages = [
  { data: "hello over wss", binary: false },
  { data: Buffer.from([0, 1, 2, 0xfe, 0xff]), binary: true },
  { data: big.toString("base64").slice(0, 1 << 20), binary: false },
  { data: big, binary: true },
];

const ws = new WebSocket(url, { ca: readFileSync(caFile), maxPayload: 4 << 20 });
let next = 0;
const send = () => {
  const m = messages[next];
  ws.send(m.data, { binary: m.binary });
};
ws.on("open", () => {
  if (ws._socket.encrypted !== true) fail("the socket is not TLS");
  send();
});
ws.on("message", (data, isBinary) => {
  const m = messages[next];
  const want = m.binary ? m.data : Buffer.from(m.data, "utf8");
  if (isBinary !== m.binary) fail(`message ${next}: binary=${isBinary}, sent binary=${m.binary}`);
  if (!Buffer.from(data).equals(want)) fail(`message ${next}: echo differs (${data.length} bytes, sent ${want.length})`);
  next += 1;
  if (next < messages.length) send();
  else ws.close(1000);
});
ws.on("close", (code) => {
  if (next < messages.length) fail(`closed (${code}) after ${next} of ${messages.length} echoes`);
  if (code !== 1000) fail(`close code ${code}, expected 1000`);
  process.exit(0);
});
ws.on("error", (e) => fail(e.message));
