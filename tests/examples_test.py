#!/usr/bin/env python3
"""examples_test.py EXAMPLE BINARY [--sanitized]: the example servers serve
correctly, survive clients that reset, and stop cleanly on signals.

EXAMPLE is one of:
  echo  examples/echo_server (also with --reader)
  http  examples/http_hello: HTTP/1.1 and 1.0 keep-alive, bare-LF requests,
        400/431/501/505 answers without resets, the idle timeout, ab -k, h2load
  resp  examples/resp_server: redis-cli, redis-benchmark (pipelined, 1,000
        connections) with the INCR count checked, a pipelined checker that
        verifies every reply over 1,000 connections, graceful shutdown
  line  examples/line_server (README.md's server): answers, peers reset
        mid-read and killed mid-write, graceful shutdown
(and `examples_test.py readme README.md examples/line_server.cpp`: README.md
shows the example as it is)

Each server is started on 127.0.0.1:0 (it prints "listening on ADDR") and
must exit with status 0 within 20 s of SIGINT or SIGTERM. --sanitized
scales the load down for ASan and TSan builds.
"""
import atexit
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

STARTED = []
SANITIZED = "--sanitized" in sys.argv


@atexit.register
def _kill_leftovers():
    for p in STARTED:
        if p.poll() is None:
            p.kill()


T0 = time.monotonic()


def fail(msg):
    raise SystemExit("FAILED: " + msg)


def phase(name):
    """Progress on stderr (ctest shows it when a test fails or times out)."""
    sys.stderr.write(f"[{time.monotonic() - T0:6.1f} s] {name}\n")
    sys.stderr.flush()


def start(argv, env=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, **(env or {})))
    STARTED.append(p)
    line = p.stdout.readline().strip()
    if not line.startswith("listening on "):
        p.kill()
        fail(f"{argv[0]}: unexpected first line {line!r}: {p.stderr.read()}")
    host, port = line[len("listening on "):].rsplit(":", 1)
    return p, (host, int(port))


def stop(p, sig, name, within=20):
    p.send_signal(sig)
    try:
        rc = p.wait(timeout=within)
    except subprocess.TimeoutExpired:
        p.kill()
        fail(f"{name}: did not exit within {within} s of {signal.Signals(sig).name}")
    err = p.stderr.read()
    if rc != 0:
        fail(f"{name}: exit status {rc} after {signal.Signals(sig).name}: {err}")
    if "terminated by exception" in err or "ERROR" in err:
        fail(f"{name}: {err}")


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            fail(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def reset(s):
    """Close with a RST instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def run_tool(argv, timeout=300):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout


# ---------------------------------------------------------------- echo

def check_echo(binary):
    for sig, workers, extra in ((signal.SIGINT, "1", []), (signal.SIGTERM, "2", ["--reader"])):
        p, addr = start([binary, "127.0.0.1:0"] + extra, {"WEFT_WORKERS": workers})
        conns = [socket.create_connection(addr) for _ in range(50)]
        for i, c in enumerate(conns):
            msg = (f"message {i} " * 50).encode()
            c.sendall(msg)
            if recv_exactly(c, len(msg)) != msg:
                fail("echo mismatch")
        big = os.urandom(1 << 20)
        c = conns[0]
        c.sendall(big)
        if recv_exactly(c, len(big)) != big:
            fail("large echo mismatch")
        conns[1].sendall(b"x" * 1000)
        reset(conns[1])  # a reset peer ends its connection, not the server
        for c in conns[2:]:
            c.close()
        d = socket.create_connection(addr)
        d.sendall(b"still serving")
        if recv_exactly(d, 13) != b"still serving":
            fail("echo after a reset")
        d.close()
        stop(p, sig, "echo_server")  # conns[0] still open and idle
        if conns[0].recv(1) != b"":
            fail("echo_server left a connection open at exit")
        conns[0].close()


# ---------------------------------------------------------------- http

def http_exchange(addr, request, close_expected=True):
    s = socket.create_connection(addr)
    s.sendall(request)
    data = recv_all(s) if close_expected else s.recv(65536)
    s.close()
    return data


def status_of(data):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    if not m:
        fail(f"not an HTTP response: {data[:200]!r}")
    return int(m.group(1))


def read_response(s, buf=b""):
    """One response with a Content-Length body; returns (head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            fail(f"connection closed inside a response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"\r\nContent-Length: (\d+)", head)
    n = int(m.group(1)) if m else 0
    if head.startswith(b"HEAD"):
        n = 0
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            fail("connection closed inside a response body")
        rest += chunk
    return head, rest[:n], rest[n:]


def count_responses(data):
    return data.count(b"HTTP/1.1 200 OK\r\n")


def check_http(binary):
    p, addr = start([binary, "127.0.0.1:0"])
    # HTTP/1.1 keep-alive: several requests, one connection.
    s = socket.create_connection(addr)
    rest = b""
    for i in range(5):
        s.sendall(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, body, rest = read_response(s, rest)
        if body != b"Hello, World!" or b"Connection" in head:
            fail(f"keep-alive response {head!r} {body!r}")
    # Pipelined requests, a body split over reads, then Connection: close.
    t = socket.create_connection(addr)
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
    t.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
    time.sleep(0.05)
    t.sendall(b"y" * 3000)
    t.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_all(t)
    if count_responses(data) != 42 or not data.rstrip(b"Hello, World!").endswith(
            b"Connection: close\r\n\r\n"):
        fail(f"{count_responses(data)} responses to 42 pipelined requests")
    t.close()
    # HTTP/1.0 without keep-alive: one response saying close, then the server closes.
    data = http_exchange(addr, b"GET / HTTP/1.0\r\n\r\n")
    if count_responses(data) != 1 or b"Connection: close\r\n" not in data:
        fail(f"HTTP/1.0 response {data!r}")
    # HTTP/1.0 keep-alive: the response says keep-alive and the connection stays.
    u = socket.create_connection(addr)
    rest = b""
    for _ in range(3):
        u.sendall(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        head, body, rest = read_response(u, rest)
        if b"\r\nConnection: keep-alive" not in head or body != b"Hello, World!":
            fail(f"HTTP/1.0 keep-alive response {head!r}")
    u.close()
    # Bare LF line endings; HEAD has no body.
    v = socket.create_connection(addr)
    v.sendall(b"GET / HTTP/1.1\nHost: x\n\nHEAD / HTTP/1.1\nHost: x\nConnection: close\n\n")
    data = recv_all(v)
    if count_responses(data) != 2 or not data.endswith(b"Connection: close\r\n\r\n"):
        fail(f"bare-LF requests: {data!r}")
    v.close()
    # Malformed requests: an error status, Connection: close, then the close.
    for request, want in (
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Many: yes\r\n" * 6000 + b"\r\n", 431)):
        data = http_exchange(addr, request)
        if status_of(data) != want or b"Connection: close\r\n" not in data:
            fail(f"{request[:40]!r}...: wanted {want}, got {data[:100]!r}")
    # A 1 MB header line: 431, and no reset (the server drains before closing).
    w = socket.create_connection(addr)
    w.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"h" * (1 << 20) + b"\r\n\r\n")
    try:
        data = recv_all(w)
    except ConnectionResetError:
        fail("a 1 MB header line got a reset, not a 431")
    if status_of(data) != 431:
        fail(f"1 MB header line: {data[:100]!r}")
    w.close()
    phase("idle timeout")
    # The idle timeout: silent connections are closed (by a second server,
    # whose timeout is 1 s; under load, a 1 s timeout would also close
    # connections that ab and h2load below keep busy).
    q, qaddr = start([binary, "127.0.0.1:0", "1000"])
    silent = [socket.create_connection(qaddr) for _ in range(200 if SANITIZED else 1000)]
    sel = selectors.DefaultSelector()
    for c in silent:
        sel.register(c, selectors.EVENT_READ)
    open_ = len(silent)
    deadline = time.monotonic() + 20
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            if key.fileobj.recv(1) != b"":
                fail("data on a silent connection")
            sel.unregister(key.fileobj)
            key.fileobj.close()
            open_ -= 1
    if open_:
        fail(f"{open_} silent connections still open 20 s after the 1 s idle timeout")
    stop(q, signal.SIGTERM, "http_hello (1 s idle timeout)")
    # ab -k (HTTP/1.0 keep-alive) and h2load (HTTP/1.1).
    phase("ab -k, h2load")
    n = 2000 if SANITIZED else 10000
    url = f"http://{addr[0]}:{addr[1]}/"
    rc, out = run_tool(["ab", "-k", "-q", "-n", str(n), "-c", "50", url])
    if (rc != 0 or not re.search(rf"Complete requests:\s+{n}\b", out)
            or not re.search(r"Failed requests:\s+0\b", out)
            or not re.search(rf"Keep-Alive requests:\s+{n}\b", out)):
        fail(f"ab -k:\n{out}")
    rc, out = run_tool(["h2load", "--h1", "-n", str(n), "-c", "50", "-m", "4", url])
    if rc != 0 or f"{n} succeeded, 0 failed, 0 errored" not in out:
        fail(f"h2load:\n{out}")
    phase("graceful shutdown")
    # Graceful shutdown: a request half-received at the signal is answered,
    # then its connection closes; an idle one closes at once. The first
    # response proves the server is reading the second request (it
    # answers what it has before it waits for more).
    s = socket.create_connection(addr)
    idle = socket.create_connection(addr)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n")
    _, body, rest = read_response(s)
    p.send_signal(signal.SIGTERM)
    if idle.recv(1) != b"":
        fail("an idle connection stayed open after SIGTERM")
    phase("idle closed")
    s.sendall(b"\r\n")
    data = rest + recv_all(s)
    if count_responses(data) != 1:
        fail(f"the request in flight at SIGTERM got {data!r}")
    s.close()
    idle.close()
    phase("stop")
    stop(p, signal.SIGTERM, "http_hello")


# ---------------------------------------------------------------- resp

def resp_command(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespParser:
    """Incremental parser of RESP replies (the kinds resp_server sends)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data

    def next(self):
        """The next complete reply, or None."""
        end = self.buf.find(b"\r\n")
        if end < 0:
            return None
        kind, line = self.buf[:1], self.buf[1:end]
        if kind in (b"+", b"-", b":"):
            self.buf = self.buf[end + 2:]
            return kind + line
        if kind == b"$":
            n = int(line)
            if n < 0:
                self.buf = self.buf[end + 2:]
                return None.__class__  # the null bulk string
            if len(self.buf) < end + 2 + n + 2:
                return None
            value = self.buf[end + 2:end + 2 + n]
            self.buf = self.buf[end + 2 + n + 2:]
            return b"$" + value
        if kind == b"*" and line == b"0":
            self.buf = self.buf[end + 2:]
            return b"*0"
        fail(f"unexpected reply {self.buf[:80]!r}")


NULL = None.__class__


def pipelined_checker(addr, conns, rounds):
    """conns connections each send `rounds` pipelined batches of commands and
    verify every reply; returns the INCR results seen."""
    socks, expect, parsers = [], [], []
    for i in range(conns):
        s = socket.create_connection(addr)
        s.setblocking(False)
        socks.append(s)
        want, out = [], []
        for r in range(rounds):
            key, val = f"key:{i}:{r}", f"value {i} {r} " + "v" * (r % 7)
            out += [resp_command("SET", key, val), resp_command("GET", key),
                    resp_command("INCR", "checker:counter"), resp_command("PING"),
                    resp_command("ECHO", f"e{i}"), resp_command("DEL", key, "nokey"),
                    resp_command("GET", key), b"PING\r\n"]
            want += [b"+OK", b"$" + val.encode(), "INCR", b"+PONG", b"$" + f"e{i}".encode(),
                     b":1", NULL, b"+PONG"]
        expect.append((b"".join(out), want))
        parsers.append(RespParser())
    sel = selectors.DefaultSelector()
    pending = {}
    for i, s in enumerate(socks):
        pending[s] = [i, 0, 0]  # index, bytes sent, replies checked
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    incrs = []
    deadline = time.monotonic() + 120
    while pending:
        if time.monotonic() > deadline:
            fail(f"checker: {len(pending)} connections still waiting for replies")
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            i, sent, checked = pending[s]
            data, want = expect[i]
            if ev & selectors.EVENT_WRITE and sent < len(data):
                sent += s.send(data[sent:sent + 65536])
                if sent == len(data):
                    sel.modify(s, selectors.EVENT_READ)
            if ev & selectors.EVENT_READ:
                chunk = s.recv(65536)
                if not chunk:
                    fail(f"checker: connection {i} closed after {checked} replies")
                parsers[i].feed(chunk)
                while (reply := parsers[i].next()) is not None:
                    w = want[checked]
                    if w == "INCR":
                        if not reply.startswith(b":"):
                            fail(f"INCR replied {reply!r}")
                        incrs.append(int(reply[1:]))
                    elif reply != w:
                        fail(f"connection {i} reply {checked}: wanted {w!r}, got {reply!r}")
                    checked += 1
            pending[s] = [i, sent, checked]
            if checked == len(want):
                sel.unregister(s)
                s.close()
                del pending[s]
    return incrs


def redis_cli(port, *args):
    rc, out = run_tool(["redis-cli", "-p", str(port)] + [str(a) for a in args], timeout=60)
    if rc != 0:
        fail(f"redis-cli {args}: {out}")
    return out.strip()


def check_resp(binary):
    p, addr = start([binary, "127.0.0.1:0", "1500"], {"WEFT_WORKERS": "2"})
    port = addr[1]
    # redis-cli, one command per connection.
    checks = [(("PING",), "PONG"), (("SET", "greeting", "hello world"), "OK"),
              (("GET", "greeting"), "hello world"), (("GET", "missing"), ""),
              (("INCR", "n"), "1"), (("INCR", "n"), "2"), (("INCR", "greeting"),
              "ERR value is not an integer or out of range"),
              (("DEL", "greeting", "n", "missing"), "2"), (("ECHO", "x y"), "x y"),
              (("FLY",), "ERR unknown command or wrong number of arguments for 'FLY'")]
    for args, want in checks:
        got = redis_cli(port, *args)
        if got != want:
            fail(f"redis-cli {' '.join(args)}: wanted {want!r}, got {got!r}")
    # Every reply checked: 1,000 connections, pipelined batches.
    phase("pipelined checker")
    conns, rounds = (200, 2) if SANITIZED else (1000, 4)
    incrs = pipelined_checker(addr, conns, rounds)
    if sorted(incrs) != list(range(1, conns * rounds + 1)):
        fail("INCR results are not exactly 1..N")
    if redis_cli(port, "GET", "checker:counter") != str(conns * rounds):
        fail("final INCR count")
    # redis-benchmark: pipelined, 1,000 connections; the INCR count must match.
    phase("redis-benchmark")
    n = 10000 if SANITIZED else 50000
    rc, out = run_tool(["redis-benchmark", "-p", str(port), "-c", "1000", "-P", "16", "-n", str(n),
                        "-t", "ping,set,get,incr", "-q"], timeout=600)
    if rc != 0 or out.count("requests per second") != 5:
        fail(f"redis-benchmark:\n{out}")
    got = redis_cli(port, "GET", "counter:__rand_int__")
    if got != str(n):
        fail(f"after {n} INCRs from redis-benchmark the counter is {got}")
    phase("graceful shutdown")
    # Graceful shutdown: an idle connection is closed at once, a command
    # half-received at the signal is finished and answered, then the
    # process exits 0 (before the 1.5 s grace period ends, as nothing is
    # left in flight).
    idle = socket.create_connection(addr)
    busy = socket.create_connection(addr)
    partial = resp_command("SET", "last", "word")
    busy.sendall(resp_command("PING") + partial[:-6])
    # The PONG proves the server has read the SET's start: it answers what
    # it has before it waits for the rest.
    if recv_exactly(busy, 7) != b"+PONG\r\n":
        fail("PING before the signal")
    p.send_signal(signal.SIGTERM)
    idle.settimeout(10)
    if idle.recv(1) != b"":
        fail("an idle connection stayed open after SIGTERM")
    busy.sendall(partial[-6:])
    if recv_all(busy) != b"+OK\r\n":
        fail("the command in flight at SIGTERM was not answered")
    phase("stop")
    stop(p, signal.SIGTERM, "resp_server")
    phase("a command stuck at the signal")
    # A command that never completes is abandoned when the grace period ends.
    p, addr = start([binary, "127.0.0.1:0", "300"])
    stuck = socket.create_connection(addr)
    stuck.sendall(resp_command("PING") + b"*2\r\n$3\r\nGET\r\n")
    if recv_exactly(stuck, 7) != b"+PONG\r\n":
        fail("PING before the signal")
    stop(p, signal.SIGINT, "resp_server (a command stuck at the signal)")
    stuck.close()


# ---------------------------------------------------------------- line

# PUMP: sends empty lines (each answered with "0\n", twice its size)
# without reading the answers, through a small receive buffer, until its
# own sends stall: then the server is blocked writing to it.
PUMP = r"""
import select, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((sys.argv[1], int(sys.argv[2])))
s.setblocking(False)
chunk = b"\n" * 65536
while True:
    if not select.select([], [s], [], 1.0)[1]:
        break
    try:
        s.send(chunk)
    except BlockingIOError:
        pass
print("stalled", flush=True)
time.sleep(3600)
"""


def check_line(binary):
    p, addr = start([binary, "127.0.0.1:0"])
    s = socket.create_connection(addr)
    s.sendall(b"hello\nworld!\n\n")
    if recv_exactly(s, 6) != b"5\n6\n0\n":
        fail("line lengths")
    # Mid-read: a peer that sent half a line and reset.
    r = socket.create_connection(addr)
    r.sendall(b"half a li")
    reset(r)
    # Mid-write: a peer that sends lines without reading the answers, so
    # the server's writes block, and is then killed.
    pump = subprocess.Popen([sys.executable, "-c", PUMP, addr[0], str(addr[1])],
                            stdout=subprocess.PIPE, text=True)
    STARTED.append(pump)
    if pump.stdout.readline().strip() != "stalled":
        fail("the pump client did not stall the server")
    pump.kill()
    pump.wait()
    # Still serving, on the old connection and on new ones.
    s.sendall(b"abc\n")
    if recv_exactly(s, 2) != b"3\n":
        fail("after the resets")
    for _ in range(3):
        t = socket.create_connection(addr)
        t.sendall(b"four\n")
        if recv_exactly(t, 2) != b"4\n":
            fail("a new connection after the resets")
        t.close()
    stop(p, signal.SIGTERM, "line_server")
    if s.recv(1) != b"":
        fail("line_server left a connection open at exit")
    s.close()


def check_readme(readme, source):
    """README.md shows examples/line_server.cpp as it is (from its first #include)."""
    code = open(source).read()
    code = code[code.index("#include"):]
    if f"```cpp\n{code}```" not in open(readme).read():
        fail(f"README.md does not show {source} as it is")


def main():
    socket.setdefaulttimeout(60)  # a wrong answer fails, it does not hang
    example, binary = sys.argv[1], sys.argv[2]
    if example == "readme":
        check_readme(binary, sys.argv[3])
        print("README.md shows line_server.cpp")
        return
    {"echo": check_echo, "http": check_http, "resp": check_resp, "line": check_line}[example](binary)
    print(f"{example} example ok")


if __name__ == "__main__":
    main()
