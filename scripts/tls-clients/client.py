"""Python clients of scripts/tls-clients.sh. Exits non-zero with the reason
on any difference.

usage:
  client.py websockets wss://127.0.0.1:PORT/ CA.pem
      Python `websockets` (sync API) with an ssl context that trusts only
      the test CA: a text, a binary and a 1 MiB message of each kind, each
      echo checked byte for byte, then a close with 1000 and 1000 expected
      back.
  client.py plain-http HOST PORT
      Plain HTTP to the TLS port: the server must close within 2 s (its
      handshake timeout is 10 s) and send nothing but a TLS alert record.
"""
import os
import socket
import ssl
import sys
import time


def fail(why):
    sys.exit("%s: %s" % (sys.argv[1], why))


def check_websockets(url, ca):
    from websockets.sync.client import connect

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    big = os.urandom(1 << 20)
    messages = ["hello over wss", bytes([0, 1, 2, 0xFE, 0xFF]), big.hex()[: 1 << 20], big]
    with connect(url, ssl=ctx, max_size=4 << 20, open_timeout=10, close_timeout=10) as ws:
        if not isinstance(ws.socket, ssl.SSLSocket):
            fail("the socket is not TLS")
        for i, m in enumerate(messages):
            ws.send(m)
            got = ws.recv(timeout=10)
            if type(got) is not type(m) or got != m:
                fail("message %d: echo differs (%s of %d, sent %s of %d)"
                     % (i, type(got).__name__, len(got), type(m).__name__, len(m)))
        ws.close(1000)
        rcvd = ws.protocol.close_rcvd
        if rcvd is None or rcvd.code != 1000:
            fail("close received: %r, expected code 1000" % (rcvd,))


def check_plain_http(host, port):
    s = socket.create_connection((host, int(port)), timeout=5)
    start = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n")
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except ConnectionResetError:
        pass
    except socket.timeout:
        fail("still open after 5 s (got %r)" % got[:40])
    took = time.monotonic() - start
    if took > 2:
        fail("closed only after %.1f s" % took)
    # A TLS alert record: content type 21, version 3.x, length 2.
    if got and not (len(got) == 7 and got[0] == 21 and got[1] == 3 and got[3:5] == b"\x00\x02"):
        fail("answered %r, not a TLS alert" % got[:40])


if __name__ == "__main__":
    {"websockets": check_websockets, "plain-http": check_plain_http}[sys.argv[1]](*sys.argv[2:])
