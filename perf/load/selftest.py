#!/usr/bin/env python3
"""selftest.py WEFT_LOAD EPOLL_ECHO THREADS_ECHO: checks that weft-load measures
and, above all, that it notices what it must notice: corrupted echoes, lost
connections, a server that is not there. Registered with ctest by
perf/load/CMakeLists.txt. Python 3 standard library only.
"""
import json
import selectors
import socket
import subprocess
import sys
import threading
import time

LOAD, EPOLL, THREADS = sys.argv[1:4]


def load(port, conns, pid=None, extra=()):
    argv = [LOAD, f"127.0.0.1:{port}", "-c", str(conns), "-d", "0.5", "-w", "0.2", "--json",
            "--progress", "none", "--connect-deadline", "10", *extra]
    if pid:
        argv += ["--pid", str(pid)]
    r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=60)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise RuntimeError(f"nothing listens on {port}")


class FaultyEcho(threading.Thread):
    """An echo server that misbehaves on each connection's `after`-th message:
    mode "corrupt" flips one byte of it, "close" closes the connection instead."""

    def __init__(self, mode, after):
        super().__init__(daemon=True)
        self.mode, self.after = mode, after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.stop = False

    def run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        while not self.stop:
            for key, _ in sel.select(0.05):
                if key.data is None:
                    c, _ = self.sock.accept()
                    c.setblocking(True)
                    sel.register(c, selectors.EVENT_READ, {"n": 0})
                    continue
                self.echo(sel, key.fileobj, key.data)

    def echo(self, sel, c, st):
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(c)
            c.close()
            return
        st["buf"] = st.get("buf", b"") + data
        while len(st["buf"]) >= 64:
            msg, st["buf"] = st["buf"][:64], st["buf"][64:]
            st["n"] += 1
            if st["n"] == self.after:
                if self.mode == "close":
                    sel.unregister(c)
                    c.close()
                    return
                msg = msg[:-1] + bytes([msg[-1] ^ 0x5A])
            c.sendall(msg)


def check(name, cond, detail):
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + ("" if cond else f": {detail}"))
    return cond


def run_server(binary):
    port = free_port()
    p = subprocess.Popen([binary, f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def main():
    ok = True
    for binary, conns in ((EPOLL, 300), (THREADS, 100)):
        p, port = run_server(binary)
        rc, r = load(port, conns, pid=p.pid)
        p.terminate()
        code = p.wait(10)
        name = binary.rsplit("/", 1)[-1]
        ok &= check(f"{name}: {conns} connections, every echo verified, no errors",
                    rc == 0 and r["opened"] == conns and r["errors"] == 0 and r["messages"] > 0, r)
        ok &= check(f"{name}: server CPU per message and peak RSS are reported",
                    r["server_cpu_us_per_msg"] > 0 and r["server_peak_rss_kb"] > 0
                    and r["server_alive"], r)
        ok &= check(f"{name}: percentiles are ordered",
                    0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"], r)
        ok &= check(f"{name}: exits 0 on SIGTERM", code == 0, code)

    srv = FaultyEcho("corrupt", 20)
    srv.start()
    rc, r = load(srv.port, 20)
    srv.stop = True
    ok &= check("a corrupted byte in an echo is a verification error",
                rc == 1 and r["verify_errors"] == 20, r)

    srv = FaultyEcho("close", 20)
    srv.start()
    rc, r = load(srv.port, 20)
    srv.stop = True
    ok &= check("a connection the server closes mid-run is an io error",
                rc == 1 and r["io_errors"] == 20, r)

    rc, r = load(free_port(), 5, extra=["--connect-retries", "1"])
    ok &= check("connecting to a port nobody listens on fails every attempt",
                rc == 1 and r["opened"] == 0 and r["failed_conns"] == 5
                and r["connect_errors"] == 10, r)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
