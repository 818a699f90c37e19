#!/usr/bin/env python3
"""tools/burst_rss.py: does examples/echo_server give a burst's memory back?

Starts build/release/examples/echo_server on a free loopback port, reads its
VmRSS (/proc/PID/status) before, opens N connections (default 5,000) that
each send 64 bytes and read them back (so every connection's fiber has run
and used its stack), reads VmRSS with all of them open, closes them all, and
then reads VmRSS once a second for --wait seconds (default 30). Prints one
line per sample and a summary: the last sample over the one before the
burst (issue 14's goal: within 1.5x after 30 s).

    tools/burst_rss.py [--conns N] [--wait S] [--rounds R] [--server PATH]

--rounds R repeats the burst R times in one server, --wait seconds apart,
to show that memory comes back after each. Standard library only.
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burst(port, conns):
    msg = b"x" * 64
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(msg)
        socks.append(s)
    for s in socks:
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                raise RuntimeError("server closed a connection")
            got += chunk
    return socks


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=5000)
    p.add_argument("--wait", type=int, default=30)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--server", default=os.path.join(ROOT, "build/release/examples/echo_server"))
    args = p.parse_args()
    need = args.conns + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit("burst_rss: needs %d descriptors, the hard limit is %d" % (need, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # inherited by the server
    port = free_port()
    server = subprocess.Popen([args.server, "127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                              text=True)
    try:
        line = server.stdout.readline()
        if "listening" not in line:
            sys.exit("burst_rss: server did not start: %r" % line)
        time.sleep(0.5)  # let the runtime settle before the baseline
        before = rss_kb(server.pid)
        print("before: %d KiB" % before)
        last = before
        for r in range(args.rounds):
            t0 = time.monotonic()
            socks = burst(port, args.conns)
            peak = rss_kb(server.pid)
            print("round %d: %d connections open after %.1f s: %d KiB" %
                  (r + 1, args.conns, time.monotonic() - t0, peak))
            for s in socks:
                s.close()
            del socks
            t1 = time.monotonic()
            for k in range(1, args.wait + 1):
                time.sleep(max(0.0, t1 + k - time.monotonic()))
                last = rss_kb(server.pid)
                print("  +%2d s after closing: %d KiB" % (k, last))
        print("summary: before %.1f MB, with %d connections %.1f MB, %d s after %.1f MB "
              "(%.2fx before)" % (before / 1024, args.conns, peak / 1024, args.wait,
                                  last / 1024, last / before))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
