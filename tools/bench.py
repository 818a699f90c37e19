#!/usr/bin/env python3
"""tools/bench.py: weft's benchmarks side by side with Go and Boost.Fiber.

For each configuration (workload, workers) the three implementations run
interleaved (weft, go, boost, weft, go, boost, ...) --reps times, each in a
fresh process with the same --n and --workers; the table shows the medians and
the ratios weft/peer computed from this one run. Then the C10K comparison
(tools/c10k.py --short) and resp_server against redis-server
(tools/resp_bench.py). perf/README.md defines the
workloads and the command line every benchmark binary shares:

    BINARY WORKLOAD [--workers N] [--n COUNT] [--json]

Usually run through `tools/weft bench`, which installs packages and builds the
release preset first. Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NCPU = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

IMPLS = [
    # key, column title, binary
    ("weft", "weft", os.path.join(ROOT, "build/release/perf/weft-bench")),
    ("go", "Go", os.path.join(ROOT, "build/peers/go-bench")),
    ("boost_fiber", "Boost.Fiber",
     os.path.join(ROOT, "build/release/perf/peers/boost_fiber/boost-fiber-bench")),
]

# name, workers (0 = all cores), full n, --quick n. Every unit is lower-is-better.
CONFIGS = [
    ("spawn", 0, 1_000_000, 100_000),
    ("yield", 1, 10_000_000, 1_000_000),
    ("parked", 0, 1_000_000, 100_000),
    ("pingpong", 1, 1_000_000, 100_000),
    ("pingpong", 0, 1_000_000, 100_000),
    ("chan", 0, 10_000_000, 1_000_000),
    ("skynet", 0, 1_000_000, 100_000),
    ("select", 0, 1_000_000, 100_000),
    ("blocking", 0, 1_000_000, 100_000),
    # handoff only at 1 worker: with an idle worker the fiber behind the
    # blocked one is simply stolen, and no handoff is measured.
    ("handoff", 1, 21, 5),
    # weft only: Go ends the process on a deadlock.
    ("deadlock", 2, 11, 3),
]

# Extra keys shown as rows of their own: (workload, key, row label).
EXTRA_ROWS = [("spawn", "second_round", "spawn (2nd round)")]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def go_env():
    """Environment for an offline, root-safe build of the Go peer."""
    env = dict(os.environ)
    peers = os.path.join(ROOT, "build/peers")
    env.update({
        "GOCACHE": os.path.join(peers, "gocache"),
        "GOPATH": os.path.join(peers, "gopath"),
        "GOFLAGS": "-buildvcs=false",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GO111MODULE": "on",
        "CGO_ENABLED": "0",
    })
    return env


def build_go_peer():
    """Builds build/peers/go-bench (Go's cache makes a rebuild cheap). Returns an error or None."""
    try:
        os.makedirs(os.path.join(ROOT, "build/peers"), exist_ok=True)
        r = subprocess.run(["go", "build", "-o", IMPLS[1][2], "."],
                           cwd=os.path.join(ROOT, "perf/peers/go"), env=go_env(),
                           capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        return "go not installed (tools/weft setup installs golang-go)"
    except subprocess.TimeoutExpired:
        return "go build timed out"
    if r.returncode != 0:
        return "go build failed: " + (r.stderr.strip() or r.stdout.strip())
    return None


def list_workloads(binary):
    """Workloads a binary offers, from the 'workloads:' line of its usage text."""
    if not os.path.exists(binary):
        return None
    r = subprocess.run([binary], capture_output=True, text=True, timeout=30)
    for line in (r.stderr + r.stdout).splitlines():
        if line.startswith("workloads:"):
            return set(line.split()[1:])
    return set()


def run_one(binary, workload, workers, n, timeout):
    """One run; returns (result dict, None) or (None, error text)."""
    cmd = [binary, workload, "--workers", str(workers), "--n", str(n), "--json"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % timeout
    if r.returncode != 0:
        err = (r.stderr.strip() or r.stdout.strip()).splitlines()
        return None, "exit %d: %s" % (r.returncode, err[-1] if err else "")
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line), None
            except json.JSONDecodeError:
                break
    return None, "no JSON line in output"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else model
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": NCPU,
        "cpu": model,
        "kernel": platform.release(),
    }
    try:
        info["weft_commit"] = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        info["weft_commit"] = "?"
    try:
        info["go"] = subprocess.run(["go", "version"], capture_output=True,
                                    text=True).stdout.split()[2]
    except (OSError, IndexError):
        info["go"] = "?"
    try:
        with open("/usr/include/boost/version.hpp") as f:
            m = re.search(r'BOOST_LIB_VERSION "([^"]+)"', f.read())
            info["boost"] = m.group(1).replace("_", ".") if m else "?"
    except OSError:
        info["boost"] = "?"
    return info


def fmt_value(v):
    if v is None:
        return None
    if v >= 1000:
        return "{:,.0f}".format(v)
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def median_of(runs, key):
    vals = [r[key] for r in runs if key in r]
    return statistics.median(vals) if vals else None


def measure(args, available):
    """Runs every selected configuration; returns one row dict per configuration."""
    rows = []
    seen = set()
    for name, workers, n_full, n_quick in CONFIGS:
        if args.only and name not in args.only:
            continue
        workers = workers or NCPU
        if (name, workers) in seen:
            continue
        seen.add((name, workers))
        n = n_quick if args.quick else n_full
        row = {"workload": name, "workers": workers, "n": n, "unit": None,
               "runs": {k: [] for k, _, _ in IMPLS}, "errors": {}}
        for rep in range(args.reps):
            for key, title, binary in IMPLS:
                offered = available.get(key)  # None: binary missing
                if offered is None or name not in offered or key in row["errors"]:
                    continue
                res, err = run_one(binary, name, workers, n, args.timeout)
                if err:
                    row["errors"][key] = err
                    log("  %-9s %-11s workers=%d: ERROR %s" % (name, title, workers, err))
                    continue
                row["unit"] = row["unit"] or res.get("unit")
                row["runs"][key].append(res)
                log("  %-9s %-11s workers=%d rep %d/%d: %.3f %s" %
                    (name, title, workers, rep + 1, args.reps, res["value"], res.get("unit", "")))
        row["median"] = {k: median_of(v, "value") for k, v in row["runs"].items()}
        row["faults"] = {k: median_of(v, "minor_faults") for k, v in row["runs"].items()}
        rows.append(row)
        for wl, key, label in EXTRA_ROWS:
            if wl == name:
                rows.append({"workload": label, "workers": workers, "n": n, "unit": row["unit"],
                             "runs": row["runs"], "errors": row["errors"],
                             "median": {k: median_of(v, key) for k, v in row["runs"].items()},
                             "faults": {k: median_of(v, key + "_faults")
                                        for k, v in row["runs"].items()},
                             "derived_from": key})
    return rows


def cell(row, key):
    v = row["median"].get(key)
    if v is not None:
        return fmt_value(v)
    if key in row["errors"]:
        return "error"
    return "n/a"


def fault_cell(row, key):
    v = row.get("faults", {}).get(key)
    return "{:,.0f}".format(v) if v is not None else "n/a"


def table(rows, markdown):
    # Minor page faults (getrusage ru_minflt) of the measured part, medians,
    # beside the figures: on a VM a first touch of a page can cost tens of us.
    head = ["workload", "workers", "n", "unit", "weft", "Go", "Boost.Fiber", "weft/Go",
            "weft/Boost", "weft faults", "Go faults"]
    body = []
    for r in rows:
        m = r["median"]
        body.append([r["workload"], str(r["workers"]), "{:,}".format(r["n"]), r["unit"] or "?",
                     cell(r, "weft"), cell(r, "go"), cell(r, "boost_fiber"),
                     fmt_ratio(m.get("weft"), m.get("go")),
                     fmt_ratio(m.get("weft"), m.get("boost_fiber")),
                     fault_cell(r, "weft"), fault_cell(r, "go")])
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if i < 4 else "---:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    out = []
    for k, line in enumerate([head] + body):
        out.append("  ".join(c.ljust(widths[i]) if i < 4 else c.rjust(widths[i])
                             for i, c in enumerate(line)))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run_tool(script, argv, timeout, stderr_tail=False):
    """python3 tools/SCRIPT ARGV from the repository root; returns its output,
    with a line saying so if it timed out or failed (and, with stderr_tail,
    the last line it printed on stderr)."""
    label = " ".join(["tools/" + script] + argv)
    log("running " + label)
    try:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", script)] + argv,
                           cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE if stderr_tail else None,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return label + " timed out"
    text = r.stdout.strip()
    if r.returncode != 0:
        tail = ""
        if stderr_tail:
            tail = ": " + (r.stderr.strip().splitlines() or [""])[-1]
        text += "\n(%s exited %d%s)" % (label, r.returncode, tail)
    return text


def run_c10k(args):
    """The short C10K comparison, if tools/c10k.py is there; returns its output or None."""
    if not os.path.exists(os.path.join(ROOT, "tools/c10k.py")):
        return None
    return run_tool("c10k.py", ["--short"], args.timeout * 2, stderr_tail=True)


def run_hiredis(args):
    """The hiredis and libpq rows (tools/hiredis_bench.py, once per server);
    returns their output."""
    texts = []
    for server in ("redis", "postgres"):
        argv = ["--reps", str(args.reps), "--server", server]
        if args.quick:
            argv.append("--quick")
        if args.markdown:
            argv.append("--markdown")
        texts.append(run_tool("hiredis_bench.py", argv, args.timeout * 4))
    return "\n\n".join(texts)


def run_resp(args):
    """tools/resp_bench.py (resp_server beside redis-server); its output, or None."""
    if not os.path.exists(os.path.join(ROOT, "tools/resp_bench.py")):
        return None
    argv = (["--quick"] if args.quick else []) + (["--markdown"] if args.markdown else [])
    return run_tool("resp_bench.py", argv, 3600)


def parse_args():
    p = argparse.ArgumentParser(description="weft vs Go vs Boost.Fiber, interleaved runs")
    p.add_argument("--reps", type=int, default=None,
                   help="runs per implementation and configuration (default 3, 1 with --quick)")
    p.add_argument("--only", default="",
                   help="comma-separated workloads, e.g. spawn,pingpong (c10k: the C10K run, "
                   "hiredis: the blocking-library comparison, with hiredis and libpq, resp: resp_server vs "
                   "redis-server)")
    p.add_argument("--quick", action="store_true", help="smoke run: smaller n, one rep")
    p.add_argument("--markdown", action="store_true", help="emit a markdown table")
    p.add_argument("--json-out", metavar="FILE", help="also write all runs and medians as JSON")
    p.add_argument("--timeout", type=int, default=600, help="seconds per run (default 600)")
    args = p.parse_args()
    args.only = set(x.strip() for x in args.only.split(",") if x.strip())
    known = {c[0] for c in CONFIGS} | {"c10k", "hiredis", "resp"}
    unknown = args.only - known
    if unknown:
        p.error("unknown workload(s): %s (known: %s)" % (", ".join(sorted(unknown)),
                                                         ", ".join(sorted(known))))
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    return args


def main():
    args = parse_args()
    notes = []
    err = build_go_peer()
    if err:
        notes.append("Go peer: " + err)
        log("bench: " + err)
    available = {}
    for key, title, binary in IMPLS:
        available[key] = list_workloads(binary)
        if available[key] is None:
            notes.append("%s: %s not built" % (title, os.path.relpath(binary, ROOT)))
            log("bench: %s not found" % binary)
    info = machine()
    log("bench: %d rep(s) per implementation%s" % (args.reps, ", quick" if args.quick else ""))
    rows = measure(args, available)
    c10k = None if args.only and "c10k" not in args.only else run_c10k(args)
    if c10k is None and "c10k" in args.only:
        notes.append("c10k: tools/c10k.py not present")
    hiredis = None if args.only and "hiredis" not in args.only else run_hiredis(args)
    resp = None if args.only and "resp" not in args.only else run_resp(args)

    header = ("weft benchmarks, %s; %d CPUs: %s; Linux %s; weft %s, Go %s, Boost %s" %
              (info["date"], info["nproc"], info["cpu"], info["kernel"], info["weft_commit"],
               info["go"], info["boost"]))
    direction = ("Medians of %d interleaved run(s) each. Every unit is lower-is-better; "
                 "ratios are weft/peer, so below 1.00x weft wins (0.50x = half the time "
                 "or memory)." % args.reps)
    md = args.markdown
    print(("_%s_" if md else "%s") % header)
    print()
    print(direction)
    print()
    if rows:
        print(table(rows, md))
    errors = [(r["workload"], r["workers"], k, e) for r in rows if "derived_from" not in r
              for k, e in r["errors"].items()]
    for wl, w, k, e in errors:
        notes.append("%s workers=%d %s: %s" % (wl, w, k, e))
    missing_weft = sorted({r["workload"] for r in rows if available.get("weft") is not None
                           and r["workload"] not in available["weft"]
                           and "derived_from" not in r})
    if missing_weft:
        notes.append("not in weft-bench yet: " + ", ".join(missing_weft))
    if notes:
        print()
        for note in notes:
            print(("- %s" if md else "note: %s") % note)
    if c10k is not None:
        print()
        print("C10K (tools/c10k.py --short):")
        print(("```\n%s\n```" if md else "%s") % c10k)
    if hiredis is not None:
        print()
        print("Blocking libraries (tools/hiredis_bench.py):")
        print(hiredis)
    if resp is not None:
        print()
        print(resp)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"machine": info, "reps": args.reps, "quick": args.quick,
                       "rows": rows, "notes": notes, "c10k": c10k, "hiredis": hiredis,
                       "resp": resp}, f, indent=1)
        log("bench: wrote %s" % args.json_out)


if __name__ == "__main__":
    main()
