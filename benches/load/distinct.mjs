// Sends COUNT requests, each with a different bearer token "<prefix>-<n>" (n = 1..count), over
// CONCURRENCY keep-alive connections, for benches/load.sh (the memory and keep-alive figures). The
// same prefix and count send the same tokens again.
//
//   node benches/load/distinct.mjs '{"port":P,"path":"/x","prefix":"p","count":N,"concurrency":C}'
//
// Prints one JSON line: {"requests","statuses":{"200":N,...},"seconds"}.
import http from 'node:http';

const cfg = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency });
const statuses = {};
let next = 1;

function get(n) {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port: cfg.port,
      path: cfg.path,
      agent,
      headers: { authorization: `Bearer ${cfg.prefix}-${n}` },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
    });
    req.on('error', (e) => resolve(`error ${e.code ?? e.message}`));
    req.end();
  });
}

async function worker() {
  while (next <= cfg.count) {
    const status = await get(next++);
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
}

const started = process.hrtime.bigint();
const timer = setTimeout(() => {
  process.stderr.write(`distinct.mjs: timed out after ${cfg.timeoutMs ?? 300000} ms\n`);
  process.exit(1);
}, cfg.timeoutMs ?? 300_000);
await Promise.all(Array.from({ length: cfg.concurrency }, worker));
clearTimeout(timer);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`${JSON.stringify({ requests: cfg.count, statuses, seconds: Math.round(seconds * 10) / 10 })}\n`);
agent.destroy();
