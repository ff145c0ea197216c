"""Opens N idle WebSocket connections to HOST:PORT (handshake done, then
silent) and holds them until stdin closes or a line arrives.

Prints "open N" once all are open. Source addresses are spread over
127.0.0.2-127.0.0.255 so that more connections fit than one source
address has ephemeral ports.
"""
import base64, os, socket, sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.%d" % (2 + i % 254), 0))
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection %d closed during the handshake" % i)
        resp += chunk
    if not resp.startswith(b"HTTP/1.1 101"):
        sys.exit("connection %d: %r" % (i, resp[:40]))
    socks.append(s)
print("open %d" % len(socks), flush=True)
sys.stdin.readline()
