#!/usr/bin/env python3
"""examples_test.py ECHO_SERVER HTTP_HELLO: the examples serve and stop cleanly.

Each server is started on 127.0.0.1:0 (it prints "listening on ADDR"),
exercised, then stopped with SIGINT or SIGTERM while a client connection is
still open and idle: it must exit with status 0 within 20 s (fibers parked
in read and accept are unwound, sockets closed).
"""
import atexit
import os
import signal
import socket
import subprocess
import sys
import time


STARTED = []


@atexit.register
def _kill_leftovers():
    for p in STARTED:
        if p.poll() is None:
            p.kill()


def start(binary, env=None):
    p = subprocess.Popen([binary, "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **(env or {})))
    STARTED.append(p)
    line = p.stdout.readline().strip()
    if not line.startswith("listening on "):
        p.kill()
        raise SystemExit(f"{binary}: unexpected first line {line!r}: {p.stderr.read()}")
    host, port = line[len("listening on "):].rsplit(":", 1)
    return p, (host, int(port))


def stop(p, sig, name):
    p.send_signal(sig)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        raise SystemExit(f"{name}: did not exit within 20 s of {signal.Signals(sig).name}")
    err = p.stderr.read()
    if rc != 0:
        raise SystemExit(f"{name}: exit status {rc} after {signal.Signals(sig).name}: {err}")


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def check_echo(binary):
    for sig, workers in ((signal.SIGINT, "1"), (signal.SIGTERM, "2")):
        p, addr = start(binary, {"WEFT_WORKERS": workers})
        conns = [socket.create_connection(addr) for _ in range(50)]
        for i, c in enumerate(conns):
            msg = (f"message {i} " * 50).encode()
            c.sendall(msg)
            assert recv_exactly(c, len(msg)) == msg, "echo mismatch"
        big = os.urandom(1 << 20)
        c = conns[0]
        c.sendall(big)
        assert recv_exactly(c, len(big)) == big, "large echo mismatch"
        for c in conns[1:]:
            c.close()
        stop(p, sig, "echo_server")  # conns[0] still open and idle
        assert conns[0].recv(1) == b"", "echo_server left a connection open at exit"
        conns[0].close()


def count_responses(data):
    return data.count(b"HTTP/1.1 200 OK\r\n")


def check_http(binary):
    p, addr = start(binary)
    # Keep-alive: several requests, one connection.
    s = socket.create_connection(addr)
    for i in range(5):
        s.sendall(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"Hello, World!"):
            head += s.recv(4096)
        assert count_responses(head) == 1, head
    # Pipelined requests, a body split over reads, then Connection: close.
    t = socket.create_connection(addr)
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
    t.sendall(b"POST /p HTTP/1.1\r\nContent-Length: 3000\r\n\r\n")
    time.sleep(0.05)
    t.sendall(b"y" * 3000)
    t.sendall(b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n")
    got = count_responses(recv_all(t))
    assert got == 42, f"{got} responses to 42 pipelined requests"
    t.close()
    # HTTP/1.0 without keep-alive: one response, then the server closes.
    u = socket.create_connection(addr)
    u.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert count_responses(recv_all(u)) == 1
    u.close()
    stop(p, signal.SIGTERM, "http_hello")  # s still open and idle
    assert s.recv(1) == b"", "http_hello left a connection open at exit"
    s.close()


def main():
    socket.setdefaulttimeout(20)  # a wrong answer fails, it does not hang
    echo, http = sys.argv[1], sys.argv[2]
    check_echo(echo)
    check_http(http)
    print("examples ok")


if __name__ == "__main__":
    main()
