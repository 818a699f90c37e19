#!/usr/bin/env python3
"""tools/hiredis_bench.py: the `hiredis` row of tools/weft bench.

1,000 clients x 100 SET/GET pairs against a local redis-server (started here
on a free loopback port, stopped at the end), one way of calling a blocking
library per column, interleaved --reps times in fresh processes:

  hooks      fibers, hiredis's synchronous API, weft::hooks linked
  blocking   fibers, the same calls inside weft::blocking()
  threads    1,000 std::threads, the same calls
  nonblock   fibers, hiredis's non-blocking API + weft::net::wait_readable
  go         Go goroutines with redigo (Debian's golang-github-gomodule-redigo-dev)

For each: ops/s (commands; higher is better), peak OS threads, and the worst
lateness of a 1 ms ticker (lower is better); medians, plus the ratios the
issue asks about.

--server postgres runs the `libpq` row instead: 200 clients x 100
`SELECT $1::int + 1` through libpq's synchronous API against a PostgreSQL
server started here (initdb into a temporary directory, loopback only, as the
postgres user when run as root), in the hooks, blocking and threads modes. Run through `tools/weft bench --only hiredis` (which builds
first) or directly after a release build. Standard library only.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF = os.path.join(ROOT, "build/release/perf")
GO_BIN = os.path.join(ROOT, "build/peers/go-redis")

MODES = [
    # key, binary, argv prefix
    ("hooks", os.path.join(PERF, "weft-hiredis-hooks"), ["hooks"]),
    ("blocking", os.path.join(PERF, "weft-hiredis"), ["blocking"]),
    ("threads", os.path.join(PERF, "weft-hiredis"), ["threads"]),
    ("nonblock", os.path.join(PERF, "weft-hiredis"), ["nonblock"]),
    ("go", GO_BIN, None),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_go():
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOPROXY="off",
               GOFLAGS="-buildvcs=false", CGO_ENABLED="0",
               GOCACHE=os.path.join(ROOT, "build/peers/gocache"))
    os.makedirs(os.path.dirname(GO_BIN), exist_ok=True)
    try:
        r = subprocess.run(["go", "build", "-o", GO_BIN, "."], env=env, capture_output=True,
                           text=True, cwd=os.path.join(ROOT, "perf/peers/go-redis"), timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "go build: %s" % e
    return None if r.returncode == 0 else "go build failed: " + r.stderr.strip()


def start_redis(port):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--protected-mode", "no", "--maxclients", "20000",
                          "--loglevel", "warning"], stdout=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise RuntimeError("redis-server exited")
            time.sleep(0.01)
    p.kill()
    raise RuntimeError("redis-server did not start")


PG_BIN = "/usr/lib/postgresql/15/bin"


def start_postgres(port, clients):
    """initdb + postgres on 127.0.0.1:port; returns (process, data dir)."""
    data = tempfile.mkdtemp(prefix="weft-pg-")
    as_pg = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U",
                            "postgres", "--no-sync"], check=True, capture_output=True)
    p = subprocess.Popen(as_pg + [os.path.join(PG_BIN, "postgres"), "-D", data, "-p", str(port),
                                  "-k", data, "-c", "listen_addresses=127.0.0.1",
                                  "-c", "max_connections=%d" % (clients + 20),
                                  "-c", "fsync=off", "-c", "shared_buffers=64MB"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1000):
        r = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1", "-p",
                            str(port)], capture_output=True)
        if r.returncode == 0:
            return p, data
        if p.poll() is not None:
            break
        time.sleep(0.02)
    p.kill()
    shutil.rmtree(data, ignore_errors=True)
    raise RuntimeError("postgres did not start")


def run_one(key, binary, prefix, port, clients, ops, timeout, server="redis"):
    if prefix is None:
        cmd = [binary, "-port", str(port), "-clients", str(clients), "-ops", str(ops)]
    else:
        cmd = [binary] + prefix + ["--port", str(port), "--clients", str(clients), "--ops",
                                   str(ops), "--server", server]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out"
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            res = json.loads(line)
            if r.returncode != 0:
                return None, "%d failed checks" % res.get("failures", -1)
            return res, None
    return None, "exit %d: %s" % (r.returncode, (r.stderr.strip().splitlines() or [""])[-1])


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--server", choices=["redis", "postgres"], default="redis")
    ap.add_argument("--clients", type=int)
    ap.add_argument("--ops", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="200 clients x 20, one rep")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json-out")
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()
    pg = args.server == "postgres"
    if args.clients is None:
        args.clients = 200 if pg else 1000
    if args.quick:
        args.reps, args.clients, args.ops = 1, min(args.clients, 200), 20
    name = "libpq" if pg else "hiredis"
    modes = [m for m in MODES if m[0] in ("hooks", "blocking", "threads")] if pg else MODES
    notes = []
    err = None if pg else build_go()
    if err:
        notes.append("Go peer: " + err)
        log("hiredis: " + err)
    port = free_port()
    if pg:
        server, pgdata = start_postgres(port, args.clients)
    else:
        server, pgdata = start_redis(port), None
    runs = {k: [] for k, _, _ in modes}
    errors = {}
    load_before = loadavg()
    try:
        for rep in range(args.reps):
            for key, binary, prefix in modes:
                if key in errors or not os.path.exists(binary):
                    if key not in errors:
                        errors[key] = "%s not built" % os.path.relpath(binary, ROOT)
                    continue
                res, e = run_one(key, binary, prefix, port, args.clients, args.ops, args.timeout,
                                 args.server)
                if e:
                    errors[key] = e
                    log("  %s %-8s ERROR %s" % (name, key, e))
                    continue
                runs[key].append(res)
                log("  " + name + " %-8s rep %d/%d: %8.0f ops/s  %5d threads  %8.2f ms late" %
                    (key, rep + 1, args.reps, res["ops_per_s"], res["threads"],
                     res["lateness_ms"]))
    finally:
        server.terminate()
        server.wait()
        if pgdata:
            shutil.rmtree(pgdata, ignore_errors=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("ops_per_s", "threads",
                                                               "lateness_ms")}
           for k, v in runs.items() if v}

    def ratio(a, b, m):
        return "%.2fx" % (med[a][m] / med[b][m]) if a in med and b in med and med[b][m] else "n/a"

    md = args.markdown
    print("%s: %d clients x %d %s, medians of %d interleaved run(s); load average "
          "before %s, after %s" % (name, args.clients, args.ops,
                                   "queries" if pg else "SET/GET", args.reps, load_before,
                                   loadavg()))
    print()
    head = ["mode", "ops/s", "OS threads", "worst lateness of a 1 ms ticker (ms)"]
    rows = [[k, "{:,.0f}".format(med[k]["ops_per_s"]), "%.0f" % med[k]["threads"],
             "%.2f" % med[k]["lateness_ms"]] if k in med else [k, "error", "", ""]
            for k, _, _ in modes]
    if md:
        print("| " + " | ".join(head) + " |")
        print("|---|---:|---:|---:|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in [head] + rows:
            print("  ".join(c.ljust(10) for c in r))
    print()
    if pg:
        print("hooks/threads ops/s %s, blocking/threads lateness %s, hooks/threads lateness %s"
              % (ratio("hooks", "threads", "ops_per_s"),
                 ratio("blocking", "threads", "lateness_ms"),
                 ratio("hooks", "threads", "lateness_ms")))
    else:
        print("hooks/threads ops/s %s, hooks/nonblock ops/s %s, blocking/threads lateness %s, "
              "hooks/go ops/s %s" % (ratio("hooks", "threads", "ops_per_s"),
                                     ratio("hooks", "nonblock", "ops_per_s"),
                                     ratio("blocking", "threads", "lateness_ms"),
                                     ratio("hooks", "go", "ops_per_s")))
    for k, e in errors.items():
        notes.append("%s: %s" % (k, e))
    for n in notes:
        print(("- %s" if md else "note: %s") % n)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"runs": runs, "median": med, "errors": errors}, f, indent=1)


if __name__ == "__main__":
    main()
