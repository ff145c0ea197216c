"""Opens N idle Pusher Channels connections to HOST:PORT, each subscribed to
a public channel, and holds them until stdin closes or a line arrives.

    pusher_idle.py HOST PORT KEY N [CHANNELS]

Each connection: WebSocket upgrade on /app/KEY?protocol=7, wait for
pusher:connection_established, send pusher:subscribe, wait for
pusher_internal:subscription_succeeded, then silence (nothing is sent, not
even pusher:ping; servers ping after their activity timeout, 120 s for
both here). CHANNELS is "shared" (the default: every connection on the one
channel idle-shared) or "own" (connection i on idle-i). Opened one at a
time. Prints "open N" once all are subscribed. Source addresses are spread
over 127.0.0.2-127.0.0.255, as scripts/idle_conns.py does. No dependencies
beyond Python's standard library.
"""
import base64, json, os, socket, struct, sys

host, port, key, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
channels = sys.argv[5] if len(sys.argv) > 5 else "shared"
if channels not in ("shared", "own"):
    sys.exit("CHANNELS is shared or own")


def send_text(s, text):
    payload = text.encode()
    mask = os.urandom(4)
    if len(payload) < 126:
        head = bytes([0x81, 0x80 | len(payload)])
    else:
        head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload))
    s.sendall(head + mask + bytes(b ^ mask[k % 4] for k, b in enumerate(payload)))


class Reader:
    """Unmasked server frames off one socket; text frames as parsed JSON."""

    def __init__(self, s, buf):
        self.s, self.buf = s, buf

    def _need(self, count, i):
        while len(self.buf) < count:
            chunk = self.s.recv(65536)
            if not chunk:
                sys.exit("connection %d closed by the server" % i)
            self.buf += chunk

    def next_event(self, i):
        while True:
            self._need(2, i)
            opcode, size, at = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
            if size == 126:
                self._need(4, i)
                size, at = struct.unpack(">H", self.buf[2:4])[0], 4
            elif size == 127:
                self._need(10, i)
                size, at = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._need(at + size, i)
            payload, self.buf = self.buf[at:at + size], self.buf[at + size:]
            if opcode == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                sys.exit("connection %d: close frame %s %r" % (i, code, payload[2:]))
            if opcode == 0x1:
                return json.loads(payload)
            # Pings and pongs: none expected this early; skipped.


def wait_for(reader, i, event):
    while True:
        ev = reader.next_event(i)
        if ev.get("event") == event:
            return ev
        if ev.get("event") == "pusher:error":
            sys.exit("connection %d: %s" % (i, json.dumps(ev)))


socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.%d" % (2 + i % 254), 0))
    s.connect((host, port))
    ws_key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /app/%s?protocol=7&client=pusher-idle&version=1 HTTP/1.1\r\n"
               "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (key, host, port, ws_key)).encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection %d closed during the handshake" % i)
        resp += chunk
    if not resp.startswith(b"HTTP/1.1 101"):
        sys.exit("connection %d: %r" % (i, resp[:80]))
    end = resp.index(b"\r\n\r\n") + 4
    reader = Reader(s, resp[end:])
    wait_for(reader, i, "pusher:connection_established")
    channel = "idle-shared" if channels == "shared" else "idle-%d" % i
    send_text(s, json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
    wait_for(reader, i, "pusher_internal:subscription_succeeded")
    socks.append(s)
print("open %d" % len(socks), flush=True)
sys.stdin.readline()
