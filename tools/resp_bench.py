#!/usr/bin/env python3
"""tools/resp_bench.py: examples/resp_server beside redis-server, driven by
redis-benchmark (requests/s per command, and each server's peak RSS).

Run through `tools/weft bench` (which runs it after the other benchmarks;
`--only resp` runs just this) or directly after `tools/weft build release`:

    python3 tools/resp_bench.py [--rounds 3] [--quick] [--markdown]

For each configuration (connections x pipeline depth) and round, each server
in turn is started on a free loopback port, driven by one redis-benchmark
run (-t ping,set,get,incr, --csv), and stopped with SIGTERM; weft's must
exit 0. Rounds interleave the servers; the table shows the median
requests/s of each test, the ratio weft/redis (above 1.00x weft serves
more), and the peak RSS (VmHWM) of each server over its run. Both servers
get the machine's cores: resp_server runs a worker per core, redis-server is
single-threaded by design (its I/O threads are off by default). The load
generator shares the cores with them. Python 3 standard library only.
"""
import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESP_SERVER = os.path.join(ROOT, "build", "release", "examples", "resp_server")
WORK = os.path.join(ROOT, "build", "resp-bench")
TESTS = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"]


def log(msg):
    sys.stderr.write("resp_bench: " + msg + "\n")
    sys.stderr.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def server_argv(name, port):
    if name == "weft":
        return [RESP_SERVER, f"127.0.0.1:{port}"]
    return [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "no", "--logfile", ""]


def one_run(name, conns, pipeline, n, tag):
    """Start server `name`, run redis-benchmark once, stop it. Returns
    ({test: rps}, peak_rss_kb, clean_exit) or None."""
    port = free_port()
    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    logpath = os.path.join(WORK, "logs", f"{name}-{tag}.log")
    with open(logpath, "w") as logf:
        proc = subprocess.Popen(server_argv(name, port), stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT)
    try:
        if not wait_listening(proc, port):
            log(f"{name} did not start; log: {logpath}")
            return None
        r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(conns), "-P", str(pipeline),
                            "-n", str(n), "-t", "ping,set,get,incr", "--csv"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=1800)
        rss = peak_rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
    rps = {}
    for row in csv.reader(io.StringIO(r.stdout)):
        if len(row) >= 2 and row[0] in TESTS:
            rps[row[0]] = float(row[1])
    if set(rps) != set(TESTS):
        log(f"redis-benchmark against {name} gave: {r.stdout[-500:]}")
        return None
    return rps, rss, rc == 0


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--quick", action="store_true", help="one round, fewer requests")
    ap.add_argument("--markdown", action="store_true", help="a markdown table")
    args = ap.parse_args()
    if not os.access(RESP_SERVER, os.X_OK):
        sys.exit("resp_bench: build/release/examples/resp_server is missing: "
                 "run tools/weft build release")
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        sys.exit("resp_bench: redis-server and redis-benchmark are needed (tools/weft setup)")
    rounds = 1 if args.quick else args.rounds
    configs = [(50, 1, 100_000 if args.quick else 300_000),
               (1000, 16, 300_000 if args.quick else 2_000_000)]
    results = {}  # (conns, pipeline) -> name -> list of runs
    for conns, pipeline, n in configs:
        for rnd in range(rounds):
            for name in ("weft", "redis"):
                log(f"{name}: -c {conns} -P {pipeline} -n {n} (round {rnd + 1}/{rounds})")
                r = one_run(name, conns, pipeline, n, f"c{conns}-P{pipeline}-{rnd}")
                if r is not None:
                    results.setdefault((conns, pipeline), {}).setdefault(name, []).append(r)
    md = args.markdown
    hdr = ["connections", "pipeline", "test", "weft req/s", "redis req/s", "weft/redis",
           "weft peak RSS MB", "redis peak RSS MB"]
    lines = []
    clean = True
    for (conns, pipeline), by in results.items():
        rss = {name: max((x[1] for x in by.get(name, []) if x[1]), default=None) for name in
               ("weft", "redis")}
        for i, t in enumerate(TESTS):
            w = median([x[0][t] for x in by.get("weft", [])])
            rd = median([x[0][t] for x in by.get("redis", [])])
            ratio = f"{w / rd:.2f}x" if w and rd else "-"
            mb = lambda kb: f"{kb / 1024:.1f}" if kb and i == 0 else ""  # noqa: E731
            lines.append([f"{conns:,}", str(pipeline), t, f"{w:,.0f}" if w else "-",
                          f"{rd:,.0f}" if rd else "-", ratio, mb(rss["weft"]), mb(rss["redis"])])
        clean = clean and all(x[2] for x in by.get("weft", []))
    print(f"resp_server vs redis-server: redis-benchmark -t ping,set,get,incr, median of "
          f"{rounds} interleaved round(s); peak RSS: the largest VmHWM over the rounds")
    widths = [max(len(c) for c in col) for col in zip(hdr, *lines)]
    if md:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join("---:" if i > 2 else "---" for i in range(len(hdr))) + "|")
        for row in lines:
            print("| " + " | ".join(row) + " |")
    else:
        print("  ".join(h.rjust(w) for h, w in zip(hdr, widths)))
        for row in lines:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(f"{'- ' if md else ''}resp_server exited 0 on SIGTERM after every run: "
          f"{'yes' if clean else 'NO'}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
