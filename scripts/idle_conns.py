"""Opens N idle WebSocket connections to HOST:PORT (handshake done, then
silent) and holds them until stdin closes or a line arrives.

Prints "open N" once all are open. Source addresses are spread over
127.0.0.2-127.0.0.255 so that more connections fit than one source
address has ephemeral ports. With IDLE_OFFER_DEFLATE=1 each offers
permessage-deflate, as a browser does, and checks that the server took it;
with IDLE_SEND_COMPRESSED=1 as well, each then sends one compressed
message and reads its echo before going idle, so that a server keeping a
compressor and decompressor per connection has made them.
"""
import base64, os, socket, struct, sys, zlib

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
offer = os.environ.get("IDLE_OFFER_DEFLATE") == "1"
extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if offer else ""
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.%d" % (2 + i % 254), 0))
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (host, key, extra)).encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection %d closed during the handshake" % i)
        resp += chunk
    if not resp.startswith(b"HTTP/1.1 101"):
        sys.exit("connection %d: %r" % (i, resp[:40]))
    if offer and b"permessage-deflate" not in resp:
        sys.exit("connection %d: the server declined permessage-deflate" % i)
    if offer and os.environ.get("IDLE_SEND_COMPRESSED") == "1":
        text = ('{"type":"ticker","symbol":"BTC-USD","price":"%d.25","seq":%d},' % (43000 + i, i)) * 8
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        z = c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
        z = z[:-4]
        mask = os.urandom(4)
        head = bytes([0xC1, 0x80 | 126]) + struct.pack(">H", len(z)) if len(z) >= 126 else bytes([0xC1, 0x80 | len(z)])
        s.sendall(head + mask + bytes(b ^ mask[k % 4] for k, b in enumerate(z)))
        # The echo (compressed, short): its two header bytes and payload.
        got = resp[resp.index(b"\r\n\r\n") + 4:]
        while len(got) < 2 or len(got) < 2 + (got[1] & 0x7F):
            got += s.recv(4096)
    socks.append(s)
print("open %d" % len(socks), flush=True)
sys.stdin.readline()
