"""Opens N idle WebSocket connections to HOST:PORT (handshake done, then
silent) and holds them until stdin closes or a line arrives.

    idle_conns.py HOST PORT N          one at a time: connect, handshake, next
    idle_conns.py HOST PORT N BURST    BURST at a time: BURST connects and
                                       requests sent at once, every response
                                       read, then the next BURST

Prints "open N" once all are open. Source addresses are spread over
127.0.0.2-127.0.0.255 so that more connections fit than one source
address has ephemeral ports. With IDLE_OFFER_DEFLATE=1 each offers
permessage-deflate, as a browser does, and checks that the server took it;
with IDLE_SEND_COMPRESSED=1 as well, each then sends one compressed
message and reads its echo before going idle, so that a server keeping a
compressor and decompressor per connection has made them. With
IDLE_TLS_CA=FILE each connection is wss://, its certificate checked
against that CA (one at a time only).
"""
import base64, errno, os, selectors, socket, ssl, struct, sys, zlib

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
burst = int(sys.argv[4]) if len(sys.argv) > 4 else 0
offer = os.environ.get("IDLE_OFFER_DEFLATE") == "1"
extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if offer else ""
socks = []
tls_ca = os.environ.get("IDLE_TLS_CA")
tls = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
if tls and burst:
    sys.exit("IDLE_TLS_CA is for connections opened one at a time")


def request():
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (host, key, extra)).encode()


def check(i, resp):
    if not resp.startswith(b"HTTP/1.1 101"):
        sys.exit("connection %d: %r" % (i, resp[:40]))
    if offer and b"permessage-deflate" not in resp:
        sys.exit("connection %d: the server declined permessage-deflate" % i)


def open_burst(first, count):
    """Connections first..first+count: all connects started, each request
    sent as soon as its connect completes, every response read. Non-blocking,
    so the whole group reaches the server within a few milliseconds."""
    sel = selectors.DefaultSelector()
    group = []
    for i in range(first, first + count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + i % 254), 0))
        s.setblocking(False)
        e = s.connect_ex((host, port))
        if e not in (0, errno.EINPROGRESS):
            sys.exit("connection %d: connect: %s" % (i, os.strerror(e)))
        sel.register(s, selectors.EVENT_WRITE, [i, b""])
        group.append(s)
    left = count
    while left:
        events = sel.select(timeout=10)
        if not events:
            sys.exit("burst at %d: %d handshakes unanswered after 10 s" % (first, left))
        for key, ev in events:
            s, st = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e:
                    sys.exit("connection %d: connect: %s" % (st[0], os.strerror(e)))
                req = request()
                if s.send(req) != len(req):
                    sys.exit("connection %d: short send of the request" % st[0])
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("connection %d closed during the handshake" % st[0])
            st[1] += chunk
            if b"\r\n\r\n" in st[1]:
                check(st[0], st[1])
                sel.unregister(s)
                left -= 1
    sel.close()
    for s in group:
        s.setblocking(True)
    socks.extend(group)


if burst:
    if offer and os.environ.get("IDLE_SEND_COMPRESSED") == "1":
        sys.exit("IDLE_SEND_COMPRESSED is for connections opened one at a time")
    for first in range(0, n, burst):
        open_burst(first, min(burst, n - first))
    print("open %d" % len(socks), flush=True)
    sys.stdin.readline()
    sys.exit(0)

for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.%d" % (2 + i % 254), 0))
    s.connect((host, port))
    if tls:
        s = tls.wrap_socket(s, server_hostname=host)
    s.sendall(request())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection %d closed during the handshake" % i)
        resp += chunk
    check(i, resp)
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
