"""The abuse of benches/abuse.sh: holds three kinds of bad clients open against one address, each
reconnecting as soon as the gateway closes it, until its stdin is closed.

    python3 benches/abuse/abuser.py '{"port": P, "silent": 512, "slow": 16, "nonreading": 16,
        "token": "...", "slow_path": "/intro/upload", "big_path": "/intro/big", "slow_every": 5,
        "check_after": 8}'

- silent: connects and sends nothing (the gateway should close it after header_read_timeout);
- slow: POSTs a head with Content-Length 1 MiB and the bearer token, then one body byte every
  `slow_every` seconds (the gateway should answer 408 or close after stream_idle_timeout);
- nonreading: GETs `big_path` (a large response) with the token and never reads. The only way to
  learn whether the gateway has dropped such a connection is to read, so after `check_after`
  seconds it drains what is buffered (at most 2 s): end of stream means the gateway closed it
  ("shed"); data still flowing means it did not ("not shed"). Then it reconnects.

Prints {"ready": true} once every client has made its first connection attempt, and on stdin EOF,
SIGTERM or SIGINT one JSON line of counts per kind: opened (TCP connections established),
connect_errors, closed_by_gateway (end of stream or reset seen), statuses (of the answers read),
held_min / held_max (connections open at once, sampled every 0.25 s after ready), and for silent
clients the median seconds from connect to close. Loopback only: the port is on 127.0.0.1.
"""

import asyncio
import json
import resource
import signal
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"


class Kind:
    def __init__(self, name):
        self.name = name
        self.opened = 0
        self.connect_errors = 0
        self.closed_by_gateway = 0
        self.not_shed = 0
        self.statuses = {}
        self.held = 0
        self.held_samples = []
        self.lifetimes = []

    def report(self):
        out = {
            "opened": self.opened,
            "connect_errors": self.connect_errors,
            "closed_by_gateway": self.closed_by_gateway,
            "statuses": self.statuses,
            "held_min": min(self.held_samples, default=0),
            "held_max": max(self.held_samples, default=0),
        }
        if self.name == "nonreading":
            out["not_shed"] = self.not_shed
        if self.lifetimes:
            out["median_s_to_close"] = round(statistics.median(self.lifetimes), 2)
        return out


def status_of(data):
    """The status code of the first response line in data, if any."""
    if data.startswith(b"HTTP/1.1 ") and len(data) >= 12:
        return data[9:12].decode("ascii", "replace")
    return None


async def open_conn(kind, port, rcvbuf=None):
    """A connected (reader, writer) or None; counts the attempt."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    except OSError:
        kind.connect_errors += 1
        await asyncio.sleep(0.2)
        return None
    kind.opened += 1
    kind.held += 1
    return reader, writer


def close(kind, writer):
    kind.held -= 1
    writer.transport.abort()


async def silent(kind, port, stop):
    while not stop.is_set():
        conn = await open_conn(kind, port)
        if conn is None:
            continue
        reader, writer = conn
        t0 = time.monotonic()
        try:
            data = await reader.read(4096)  # nothing is sent, so this ends only when the gateway closes
            if data and (status := status_of(data)):
                kind.statuses[status] = kind.statuses.get(status, 0) + 1
        except OSError:
            pass
        kind.closed_by_gateway += 1
        kind.lifetimes.append(time.monotonic() - t0)
        close(kind, writer)


async def slow(kind, port, stop, token, path, every):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {1 << 20}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        conn = await open_conn(kind, port)
        if conn is None:
            continue
        reader, writer = conn
        answer = asyncio.ensure_future(reader.read(4096))
        try:
            writer.write(head)
            while not stop.is_set() and not answer.done():
                await asyncio.wait([answer], timeout=every)
                if not answer.done():
                    writer.write(b"x")
                    await writer.drain()
            if answer.done():
                data = answer.result()
                if data and (status := status_of(data)):
                    kind.statuses[status] = kind.statuses.get(status, 0) + 1
                kind.closed_by_gateway += 1
        except OSError:
            kind.closed_by_gateway += 1
        answer.cancel()
        close(kind, writer)


async def nonreading(kind, port, stop, token, path, check_after):
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    while not stop.is_set():
        conn = await open_conn(kind, port, rcvbuf=65536)
        if conn is None:
            continue
        reader, writer = conn
        try:
            writer.write(head)
            await asyncio.wait_for(stop.wait(), timeout=check_after)
        except (OSError, asyncio.TimeoutError):
            pass
        if not stop.is_set():
            await check_shed(kind, reader)
        close(kind, writer)


async def check_shed(kind, reader):
    """Drains for at most 2 s: end of stream (or reset) means the gateway had closed it."""
    deadline = time.monotonic() + 2
    first = True
    try:
        while (left := deadline - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(1 << 16), timeout=left)
            if first and (status := status_of(data)):
                kind.statuses[status] = kind.statuses.get(status, 0) + 1
            first = False
            if not data:
                kind.closed_by_gateway += 1
                return
    except OSError:
        kind.closed_by_gateway += 1
        return
    except asyncio.TimeoutError:
        pass
    kind.not_shed += 1


async def sample(kinds, stop):
    while not stop.is_set():
        for kind in kinds:
            kind.held_samples.append(kind.held)
        await asyncio.sleep(0.25)


async def main(cfg):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = cfg["silent"] + cfg["slow"] + cfg["nonreading"] + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.raw.read(4096) or stop.set())
    kinds = {name: Kind(name) for name in ("silent", "slow", "nonreading")}
    port, token = cfg["port"], cfg["token"]
    tasks = [asyncio.ensure_future(silent(kinds["silent"], port, stop)) for _ in range(cfg["silent"])]
    tasks += [
        asyncio.ensure_future(slow(kinds["slow"], port, stop, token, cfg["slow_path"], cfg["slow_every"]))
        for _ in range(cfg["slow"])
    ]
    tasks += [
        asyncio.ensure_future(nonreading(kinds["nonreading"], port, stop, token, cfg["big_path"], cfg["check_after"]))
        for _ in range(cfg["nonreading"])
    ]
    await asyncio.sleep(0.5)
    print(json.dumps({"ready": True}), flush=True)
    sampler = asyncio.ensure_future(sample(kinds.values(), stop))
    await stop.wait()
    for task in tasks + [sampler]:
        task.cancel()
    await asyncio.gather(*tasks, sampler, return_exceptions=True)
    print(json.dumps({name: kind.report() for name, kind in kinds.items()}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
