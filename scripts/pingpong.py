#!/usr/bin/env python3
"""A slow, neutral WebSocket client: strict ping-pong, one message per write.

Opens C connections, then on each sends one masked text message of SIZE
bytes per write and waits for its echo before sending the next, for N
messages in all (spread evenly over the connections), then closes every
connection with a Close (1000) and waits for the server's. With C > 1 the
sockets are non-blocking and interleaved through `selectors`, but each write
still carries exactly one message: unlike loadgen, nothing is batched, so a
server's loop turn carries few messages (one, at one connection) and its
per-turn cost shows. `--think` adds a pause between an echo and the next
message on a connection: under callgrind the server runs some 50 times
slower than natively, so without it a Python client can reply before the
server looks again, and a read finds the next message waiting, where
natively (the server far faster than the client) every message waits for a
turn of its own. Standard library only, so any server can be measured
against the same client (scripts/instructions.sh, bench.py's
`instructions(..., client="pingpong")`).

    scripts/pingpong.py 127.0.0.1:9001 --connections 100 --messages 4000

Prints one JSON line: {"messages": echoed, "errors": n, "seconds": t}.
Exits 1 if any echo was missing or wrong.
"""
import argparse, base64, collections, hashlib, json, os, selectors, socket, struct, sys, time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed during the handshake")
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake refused: %r" % head.split(b"\r\n", 1)[0])
    want = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if b"sec-websocket-accept: " + want.lower() not in head.lower():
        raise RuntimeError("wrong Sec-WebSocket-Accept")
    if rest:
        raise RuntimeError("bytes after the 101 before any message")
    return s


def masked(opcode, payload):
    """A final, masked client frame (payloads under 126 bytes or 64 KiB)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    k = int.from_bytes(key * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    body = (int.from_bytes(payload, "little") ^ k).to_bytes(n, "little")
    return head + key + body


def echo_of(payload):
    """The server's unmasked echo of `payload` (a text frame)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Conn:
    def __init__(self, sock, todo):
        self.sock = sock
        self.todo = todo
        self.got = b""
        self.out = b""


def close(sock, timeout):
    """Close 1000, then wait for the server's Close (or its end of input)."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    try:
        sock.sendall(masked(0x8, struct.pack("!H", 1000)))
        buf = b""
        while True:
            if len(buf) >= 2 and buf[0] & 0x0F == 0x8:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("addr", help="host:port")
    ap.add_argument("--connections", "-c", type=int, default=1)
    ap.add_argument("--messages", "-n", type=int, default=1000, help="in all, over every connection")
    ap.add_argument("--size", type=int, default=20, help="payload bytes")
    ap.add_argument("--think", type=float, default=0.0,
                    help="seconds a connection waits between an echo and its next message (default 0)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds without progress before giving up")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    payload = (b"0123456789abcdefghijklmnopqrstuvwxyz" * (a.size // 36 + 1))[: a.size]
    want = echo_of(payload)
    conns = [Conn(handshake(host, port, a.timeout), a.messages // a.connections + (i < a.messages % a.connections))
             for i in range(a.connections)]
    t0 = time.time()
    echoed = errors = 0
    sel = selectors.DefaultSelector()
    for c in conns:
        c.sock.setblocking(False)
        if c.todo:
            c.out = masked(0x1, payload)
            sel.register(c.sock, selectors.EVENT_READ, c)
    live = sum(1 for c in conns if c.todo)

    def write(c):
        # One message per write; a short write (never, at these sizes) waits
        # for room rather than merging with the next message.
        n = c.sock.send(c.out)
        c.out = c.out[n:]
        sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)

    for c in conns:
        if c.todo:
            write(c)
    # Connections thinking before their next message: (when, conn), in the
    # order they got their echoes, so the earliest is first.
    thinking = collections.deque()
    while live:
        while thinking and thinking[0][0] <= time.monotonic():
            write(thinking.popleft()[1])
        wait = a.timeout
        if thinking:
            wait = max(0.0, thinking[0][0] - time.monotonic())
        events = sel.select(wait)
        if not events and not thinking:
            errors += 1
            print("pingpong: no progress in %g s" % a.timeout, file=sys.stderr)
            break
        for key, mask in events:
            c = key.data
            if mask & selectors.EVENT_WRITE and c.out:
                write(c)
            if not mask & selectors.EVENT_READ:
                continue
            chunk = c.sock.recv(65536)
            if not chunk:
                errors += 1
                live -= 1
                sel.unregister(c.sock)
                print("pingpong: the server closed a connection", file=sys.stderr)
                continue
            c.got += chunk
            if len(c.got) < len(want):
                continue
            if c.got != want:
                errors += 1
                print("pingpong: wrong echo %r" % c.got[:64], file=sys.stderr)
            else:
                echoed += 1
            c.got = b""
            c.todo -= 1
            if c.todo:
                c.out = masked(0x1, payload)
                if a.think:
                    thinking.append((time.monotonic() + a.think, c))
                else:
                    write(c)
            else:
                live -= 1
                sel.unregister(c.sock)
    elapsed = time.time() - t0
    sel.close()
    for c in conns:
        close(c.sock, a.timeout)
    print(json.dumps({"messages": echoed, "errors": errors, "seconds": round(elapsed, 3)}))
    sys.exit(1 if errors or echoed != a.messages else 0)


if __name__ == "__main__":
    main()
