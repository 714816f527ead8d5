# Sends COUNT GET requests, one at a time, over one keep-alive connection, and checks each answer is
# a 200 framed by Content-Length; for benches/callgrind.sh (a fixed count, not a duration: the
# server runs under callgrind, many times slower than it would).
#
#   python3 benches/callgrind/client.py PORT PATH HEADER COUNT     (HEADER may be "")
import socket
import sys

port, path, header, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
extra = f"{header}\r\n" if header else ""
request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()

sock = socket.create_connection(("127.0.0.1", port), timeout=60)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
for n in range(count):
    sock.sendall(request)
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(f"request {n}: connection closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200 "):
        sys.exit(f"request {n}: {lines[0]}")
    length = next((int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")), None)
    if length is None:
        sys.exit(f"request {n}: no Content-Length")
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(f"request {n}: connection closed in the body")
        buf += chunk
    buf = buf[length:]
print(count)
