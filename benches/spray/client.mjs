// One client of benches/spray.sh, from its own loopback source address (so the gateway sees three
// clients), on keep-alive connections:
//
//   node benches/spray/client.mjs '{"role":R,"port":P,"path":"/x","local":"127.0.0.N",...}'
//
// Roles:
//   spray   {"seconds","concurrency"}: distinct random tokens at full speed for that long.
//           Prints {"role","requests","statuses":{...},"rps"}.
//   new     {"tokens":[...],"every_ms","attempts"}: each token once, one every every_ms; a 429 or 503
//           is retried after its Retry-After (up to attempts tries). Prints {"role","tokens","ok",
//           "first_try","retried","within_retry_after","max_attempts","max_seconds","statuses"}, where
//           within_retry_after counts tokens answered 200 on the first retry after a Retry-After.
//   cached  {"tokens":[...],"seconds","concurrency"}: replays known tokens for that long.
//           Prints {"role","requests","statuses","errors"} (errors: anything but 200).
import http from 'node:http';
import { randomBytes } from 'node:crypto';

const cfg = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency ?? 16 });

function get(token) {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port: cfg.port,
      path: cfg.path,
      localAddress: cfg.local,
      agent,
      headers: { authorization: `Bearer ${token}` },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: String(res.statusCode), retryAfter: Number(res.headers['retry-after']) }));
    });
    req.on('error', (e) => resolve({ status: `error ${e.code ?? e.message}` }));
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const count = (statuses, s) => { statuses[s] = (statuses[s] ?? 0) + 1; };

async function forSeconds(seconds, concurrency, nextToken) {
  const statuses = {};
  let requests = 0;
  const end = Date.now() + seconds * 1000;
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < end) {
      const { status } = await get(nextToken());
      requests += 1;
      count(statuses, status);
    }
  }));
  return { requests, statuses, rps: Math.round(requests / ((Date.now() - started) / 1000)) };
}

async function spray() {
  const r = await forSeconds(cfg.seconds, cfg.concurrency, () => randomBytes(24).toString('base64url'));
  return { role: 'spray', ...r };
}

async function cached() {
  let i = 0;
  const r = await forSeconds(cfg.seconds, cfg.concurrency, () => cfg.tokens[i++ % cfg.tokens.length]);
  const errors = Object.entries(r.statuses).filter(([s]) => s !== '200').reduce((n, [, c]) => n + c, 0);
  return { role: 'cached', ...r, errors };
}

async function present(token) {
  const started = Date.now();
  const statuses = [];
  let waitedRetryAfter = false;
  for (let attempt = 1; attempt <= cfg.attempts; attempt++) {
    const { status, retryAfter } = await get(token);
    statuses.push(status);
    if (status === '200') {
      return { ok: true, attempt, seconds: (Date.now() - started) / 1000, statuses, withinRetryAfter: attempt === 1 || (attempt === 2 && waitedRetryAfter) };
    }
    if ((status !== '429' && status !== '503') || !(retryAfter >= 0)) break;
    waitedRetryAfter = true;
    await sleep(retryAfter * 1000);
  }
  return { ok: false, attempt: statuses.length, seconds: (Date.now() - started) / 1000, statuses, withinRetryAfter: false };
}

async function fresh() {
  const pending = [];
  for (const token of cfg.tokens) {
    pending.push(present(token));
    await sleep(cfg.every_ms);
  }
  const results = await Promise.all(pending);
  const statuses = {};
  for (const r of results) for (const s of r.statuses) count(statuses, s);
  return {
    role: 'new',
    tokens: results.length,
    ok: results.filter((r) => r.ok).length,
    first_try: results.filter((r) => r.ok && r.attempt === 1).length,
    retried: results.filter((r) => r.attempt > 1).length,
    within_retry_after: results.filter((r) => r.withinRetryAfter).length,
    max_attempts: Math.max(...results.map((r) => r.attempt)),
    max_seconds: Math.max(...results.map((r) => r.seconds)),
    statuses,
  };
}

const roles = { spray, new: fresh, cached };
const result = await roles[cfg.role]();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
