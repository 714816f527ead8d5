// A tiny, fast RFC 7662 introspection endpoint for benches/load.sh: every token is active (an
// Okta-shaped answer for client orders-app, scope mulescope, exp in an hour), so the gateway's cache,
// request coalescing and connection reuse can be measured without a real provider's cost.
//
//   node benches/load/fake_introspection.mjs ISSUER
//
// Prints one line once listening: {"port":PORT}. Serves, on 127.0.0.1:
//   POST /introspect          form body token=...; counted; answers after the current delay
//   GET  /__stats             {"calls","distinct","connections","delay_ms"} (not counted); "connections"
//                             counts only TCP connections that carried at least one introspection
//   POST /__delay?ms=N        sets the delay before each answer (not counted)
// Exits on stdin EOF, SIGTERM or SIGINT.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const issuer = process.argv[2];
if (!issuer) throw new Error('usage: fake_introspection.mjs ISSUER');

let delayMs = 0;
let calls = 0;
let connections = 0;
const seen = new Set();
const counted = new WeakSet();

function answer(res, token) {
  const now = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({
    active: true,
    scope: 'mulescope',
    username: 'orders-app',
    exp: now + 3600,
    iat: now,
    sub: 'orders-app',
    aud: 'api://default',
    iss: issuer,
    jti: `AT.${randomUUID()}`,
    token_type: 'Bearer',
    client_id: 'orders-app',
    uid: '00u1bench',
  });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return token;
}

const server = http.createServer((req, res) => {
  const [path, query = ''] = req.url.split('?');
  if (path === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ calls, distinct: seen.size, connections, delay_ms: delayMs }));
    return;
  }
  if (path === '/__delay') {
    delayMs = Number(new URLSearchParams(query).get('ms') ?? 0);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ delay_ms: delayMs }));
    return;
  }
  if (path !== '/introspect' || req.method !== 'POST') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not_found"}');
    return;
  }
  calls += 1;
  if (!counted.has(req.socket)) {
    counted.add(req.socket);
    connections += 1;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token') ?? '';
    seen.add(token);
    if (delayMs > 0) setTimeout(() => answer(res, token), delayMs);
    else answer(res, token);
  });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
