// Fires N requests at once, each on its own new TCP connection, for benches/load.sh: the stampede
// (one new token, N concurrent first requests) and the cold start (N requests as soon as the port
// accepts connections).
//
//   node benches/load/burst.mjs '{"port":P,"path":"/x","token":"T","n":200,"waitForPortMs":0}'
//
// With waitForPortMs > 0 it first polls the port (every 2 ms, up to that long) until a connection
// succeeds. Then it opens N connections, waits until all are established, writes the N requests in
// one go and reads every response. Prints one JSON line:
//   {"n","statuses":{"200":N,...},"errors","waited_for_port_ms","connect_ms","slowest_ms"}
import net from 'node:net';

const cfg = JSON.parse(process.argv[2]);
const host = cfg.host ?? '127.0.0.1';
const deadline = (ms) => new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref());

function connect() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port: cfg.port });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function waitForPort(ms) {
  const start = Date.now();
  for (;;) {
    try {
      const s = await connect();
      s.destroy();
      return Date.now() - start;
    } catch (e) {
      if (Date.now() - start > ms) throw new Error(`port ${cfg.port} not open after ${ms} ms: ${e.message}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

function exchange(socket, request) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => { data += d; });
    socket.on('error', () => {});
    socket.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve({ status: m ? m[1] : 'error', ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
    socket.write(request);
  });
}

async function main() {
  const waited = cfg.waitForPortMs > 0 ? await waitForPort(cfg.waitForPortMs) : 0;
  const t0 = process.hrtime.bigint();
  const sockets = await Promise.all(Array.from({ length: cfg.n }, connect));
  const connectMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const request = `GET ${cfg.path} HTTP/1.1\r\nHost: ${host}:${cfg.port}\r\n`
    + (cfg.token ? `Authorization: Bearer ${cfg.token}\r\n` : '')
    + 'Connection: close\r\n\r\n';
  const results = await Promise.all(sockets.map((s) => exchange(s, request)));
  const statuses = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  process.stdout.write(`${JSON.stringify({
    n: cfg.n,
    statuses,
    waited_for_port_ms: waited,
    connect_ms: Math.round(connectMs * 10) / 10,
    slowest_ms: Math.round(Math.max(...results.map((r) => r.ms)) * 10) / 10,
  })}\n`);
}

await Promise.race([main(), deadline(cfg.timeoutMs ?? 60_000)]);
process.exit(0);
