#!/usr/bin/env python3
"""A deflate bomb against the release server: what it costs in memory.

    scripts/deflate-bomb.sh [--mode shared|dedicated] [--limit BYTES] [--bombs N]

Starts `ringws --deflate MODE --max-message-size LIMIT` (one thread), warms
it up with one ordinary compressed echo per connection, then sends N
messages at once, each of whose payload is about 250 KiB of deflate data
(under the limit) that inflates to 256 MiB of zeros. Every one must be answered with a
Close 1009 (message too big), and the server's peak RSS (VmHWM) may grow by
at most 2 x LIMIT per bomb in flight: the inflater stops at the limit
instead of inflating the gigabyte. Prints the figures; exits 1 if either
check fails.
"""
import argparse
import os
import socket
import struct
import subprocess
import sys
import time
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SERVER = os.path.join(ROOT, "target", "release", "ringws")


def rss_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s for %d" % (field, pid))


def raw_deflate(chunks):
    """Raw deflate (no zlib header) of the chunks, sync-flushed, with the
    trailing 00 00 ff ff removed (RFC 7692 7.2.1)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [z.compress(c) for c in chunks]
    out.append(z.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(out)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def frame(b0, payload, mask=b"\x11\x22\x33\x44"):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    # Whole-buffer XOR through int arithmetic: fast enough for a few MiB.
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    masked = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
    return head + mask + masked


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise RuntimeError("closed during the handshake")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101") or b"permessage-deflate" not in head:
        raise RuntimeError("no deflate agreed: %r" % head)
    return s, rest


def read_frame(s, buf):
    while True:
        if len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, off = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127 and len(buf) >= 10:
                n, off = struct.unpack("!Q", buf[2:10])[0], 10
            if n < 126 or off > 2:
                if len(buf) >= off + n:
                    return b0, buf[off:off + n], buf[off + n:]
        d = s.recv(65536)
        if not d:
            return None, b"", buf
        buf += d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="shared", choices=["shared", "dedicated"])
    ap.add_argument("--limit", type=int, default=1 << 20)
    ap.add_argument("--bombs", type=int, default=8)
    ap.add_argument("--port", type=int, default=19061)
    a = ap.parse_args()
    srv = subprocess.Popen([SERVER, "--listen", "127.0.0.1:%d" % a.port, "--threads", "1",
                            "--deflate", a.mode, "--max-message-size", str(a.limit),
                            "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", a.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # 256 MiB of zeros: about 250 KiB of deflate data, which the
        # frame limit lets through; only the inflated size is over.
        zero = bytes(1 << 20)
        bomb = raw_deflate(zero for _ in range(256))
        ordinary = raw_deflate([b'{"ok":true,"n":1}' * 20])
        conns = []
        for _ in range(a.bombs):
            s, rest = connect(a.port)
            s.sendall(frame(0xC1, ordinary))
            b0, p, rest = read_frame(s, rest)
            if b0 != 0xC1:
                raise RuntimeError("no compressed echo: %r" % b0)
            conns.append((s, rest))
        before = rss_kib(srv.pid, "VmHWM")
        t0 = time.time()
        wire = frame(0xC2, bomb)
        for s, _ in conns:
            s.sendall(wire[: len(wire) // 2])
        for s, _ in conns:
            s.sendall(wire[len(wire) // 2:])
        codes = []
        for s, rest in conns:
            b0, p, rest = read_frame(s, rest)
            codes.append(struct.unpack("!H", p[:2])[0] if b0 == 0x88 and len(p) >= 2 else None)
        took = time.time() - t0
        after = rss_kib(srv.pid, "VmHWM")
        for s, _ in conns:
            s.close()
    finally:
        srv.terminate()
        srv.wait(10)
    grew = (after - before) * 1024
    bound = 2 * a.limit * a.bombs
    print("deflate bomb (%s mode): %d messages of %d KiB deflate data, each inflating to 256 MiB,"
          " message limit %d KiB" % (a.mode, a.bombs, len(bomb) // 1024, a.limit // 1024))
    print("  close codes: %s; %.2f s for all" % (sorted(set(codes), key=str), took))
    print("  server peak RSS grew by %d KiB: %.2f x the limit per bomb (bound 2.00)"
          % (grew // 1024, grew / a.limit / a.bombs))
    ok = all(c == 1009 for c in codes) and grew <= bound
    print("deflate bomb: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
