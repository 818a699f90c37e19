#!/usr/bin/env python3
"""tools/c10k.py: the C10K echo and HTTP hello comparisons (perf/README-c10k.md).

Run through `tools/weft c10k [options]`, which installs packages and builds the
release preset first. For each echo server in turn (weft's examples/echo_server,
the Go, raw-epoll and thread-per-connection peers) it starts the server on a
free loopback port, drives it with build/release/perf/weft-load (C connections,
64-byte verified ping-pong, the server's CPU per message and peak RSS from
/proc), stops it with SIGTERM and checks it exits 0. Then wrk drives
examples/http_hello, nginx and Go net/http, interleaved. --plot sweeps the
connection count for weft, Go and epoll and writes perf/c10k.png (gnuplot).

Python 3 standard library only. Every child is stopped on exit, on Ctrl-C
and on SIGTERM. If this script is killed outright, its children die with it
where the kernel honours PR_SET_PDEATHSIG, and the next run kills any that are
left (their pids are kept in build/c10k/children.json).
"""
import argparse
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "release")
PERF_BIN = os.path.join(BUILD, "perf")
WORK = os.path.join(ROOT, "build", "c10k")  # logs, the nginx prefix, the last results
EXAMPLES = os.path.join(BUILD, "examples")  # weft's servers; --examples overrides
TTY = sys.stderr.isatty()

ECHO_SERVERS = ["weft", "weft-reader", "go", "epoll", "threads"]
HTTP_SERVERS = ["weft", "nginx", "go"]
PLOT_CONNS = [1000, 2000, 5000, 10000]
KNOWN = {("echo", n) for n in ECHO_SERVERS} | {("http", n) for n in HTTP_SERVERS}


# ---------------------------------------------------------------- output

def status(msg):
    """A progress line: rewritten in place on a terminal, a plain line otherwise."""
    if TTY:
        sys.stderr.write("\r\033[K" + msg)
    else:
        sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def clear_status():
    if TTY:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def note(msg):
    """A line that stays (warnings, skipped servers)."""
    clear_status()
    sys.stderr.write("c10k: " + msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- children

_children = []  # Popen objects still to reap; each server leads its own process group


def _pdeathsig():
    """In the child before exec: die with this script (PR_SET_PDEATHSIG = 1)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # noqa: BLE001 (best effort; must never fail the exec)
        pass


CHILDREN_FILE = os.path.join(WORK, "children.json")


def _record_children():
    """Keep the live children's pids on disk so a later run can reap them if we are killed."""
    try:
        with open(CHILDREN_FILE, "w") as f:
            json.dump([[p.pid, p.own_group, p.args[0]] for p in _children], f)
    except OSError:
        pass


def reap_leftovers():
    """Kill children of an earlier run that was killed outright (still running our binaries)."""
    try:
        with open(CHILDREN_FILE) as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return
    for pid, group, exe in entries:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0 == exe:
            note(f"killing {os.path.basename(exe)} (pid {pid}) left over from an earlier run")
            try:
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    _record_children()


def spawn(argv, group, **kw):
    """Start a child; `group` puts it in a new process group (servers: nginx forks workers)."""
    p = subprocess.Popen(argv, preexec_fn=_pdeathsig, start_new_session=group, **kw)
    p.own_group = group
    _children.append(p)
    _record_children()
    return p


def forget(p):
    if p in _children:
        _children.remove(p)
        _record_children()


def _signal_child(p, sig):
    try:
        if p.own_group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, timeout=10.0):
    """SIGTERM, wait; SIGKILL after `timeout`. Returns the exit status (None if killed)."""
    if p.poll() is None:
        _signal_child(p, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_child(p, signal.SIGKILL)
            p.wait()
            forget(p)
            return None
    if p.own_group:
        _signal_child(p, signal.SIGKILL)  # stragglers in its group (nginx workers)
    forget(p)
    return p.returncode


def kill_all():
    for p in list(_children):
        stop(p, timeout=3.0)


def _on_signal(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------- host setup

def raise_fd_limit(needed):
    """Soft = hard = as high as we may: children inherit it. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = int(f.read())
    except OSError:
        ceiling = hard
    for want in (ceiling, 1 << 20, 262144, 65536):
        if want <= hard:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            continue
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        note(f"the descriptor hard limit is {hard} and cannot be raised here; "
             f"{needed} are needed (run as root, or raise it with ulimit -Hn)")
    return hard


def read_int_pair(path):
    try:
        with open(path) as f:
            a, b = f.read().split()[:2]
            return int(a), int(b)
    except (OSError, ValueError):
        return None


def thread_headroom():
    """How many more threads the kernel will let us start (pid_max, threads-max)."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        with open("/proc/sys/kernel/threads-max") as f:
            threads_max = int(f.read())
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return 1 << 30
    return min(pid_max, threads_max) - running


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(p, port, log, timeout=15.0):
    """Until something accepts on port; False (and the log's tail) if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    note(f"server did not start listening on port {port}; its log ({log}):")
    try:
        with open(log) as f:
            sys.stderr.write("".join(f.readlines()[-15:]))
    except OSError:
        pass
    return False


def go_env():
    env = dict(os.environ)
    env.update(GOCACHE=os.path.join(ROOT, "build", "go-cache"),
               GOPATH=os.path.join(ROOT, "build", "gopath"),
               GOFLAGS="-buildvcs=false", GOPROXY="off", GO111MODULE="on",
               GOTOOLCHAIN="local", GOTELEMETRY="off")
    return env


def build_go():
    """Builds the Go peers into build/release/perf. Returns the names that built."""
    built = []
    if shutil.which("go") is None:
        note("go is not installed: the Go peers are skipped (tools/weft setup installs golang-go)")
        return built
    for name in ("go-echo", "go-http"):
        status(f"c10k: building {name}")
        src = os.path.join(ROOT, "perf", "peers", name)
        out = os.path.join(PERF_BIN, name)
        r = subprocess.run(["go", "build", "-o", out, "."], cwd=src, env=go_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            built.append(name)
        else:
            note(f"building {name} failed:\n{r.stdout}")
    return built


# ---------------------------------------------------------------- servers

def nginx_argv(port):
    """A scratch prefix with perf/peers/nginx/nginx.conf listening on `port`."""
    prefix = os.path.join(WORK, "nginx")
    for d in ("tmp", "logs"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    with open(os.path.join(ROOT, "perf", "peers", "nginx", "nginx.conf")) as f:
        conf = f.read()
    conf, n = re.subn(r"listen\s+[^;]+;", f"listen 127.0.0.1:{port};", conf, count=1)
    if n != 1:
        raise RuntimeError("perf/peers/nginx/nginx.conf has no listen line")
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", prefix + "/", "-c", path,
            "-e", "stderr"]


def server_binary(kind, name):
    """The executable of server `name` of `kind` ("echo" or "http"), or None if not built."""
    paths = {
        ("echo", "weft"): os.path.join(EXAMPLES, "echo_server"),
        ("echo", "weft-reader"): os.path.join(EXAMPLES, "echo_server"),
        ("echo", "go"): os.path.join(PERF_BIN, "go-echo"),
        ("echo", "epoll"): os.path.join(PERF_BIN, "epoll-echo"),
        ("echo", "threads"): os.path.join(PERF_BIN, "threads-echo"),
        ("http", "weft"): os.path.join(EXAMPLES, "http_hello"),
        ("http", "go"): os.path.join(PERF_BIN, "go-http"),
        ("http", "nginx"): shutil.which("nginx") or "/usr/sbin/nginx",
    }
    path = paths.get((kind, name))
    return path if path and os.access(path, os.X_OK) else None


def server_argv(kind, name, port, workers):
    """(argv, env) to run server `name` of `kind` on `port`."""
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ)
    if workers:
        env.update(WEFT_WORKERS=str(workers), GOMAXPROCS=str(workers))
    if (kind, name) == ("http", "nginx"):
        return nginx_argv(port), env
    argv = [server_binary(kind, name), addr]
    if name == "weft-reader":
        argv.append("--reader")  # every read through a weft::net::reader
    if name == "epoll" and workers:
        argv += ["--threads", str(workers)]
    return argv, env


class Server:
    """A running server (context manager): started on a free port, stopped with SIGTERM."""

    def __init__(self, kind, name, workers, tag):
        self.kind, self.name, self.workers = kind, name, workers
        self.log = os.path.join(WORK, "logs", f"{kind}-{name}-{tag}.log")
        self.port = free_port()
        self.proc = None
        self.exit = None

    def __enter__(self):
        argv, env = server_argv(self.kind, self.name, self.port, self.workers)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        with open(self.log, "w") as log:
            self.proc = spawn(argv, True, env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT)
        if not wait_listening(self.proc, self.port, self.log):
            stop(self.proc, timeout=2.0)
            raise RuntimeError(f"{self.name} server failed to start")
        return self

    def __exit__(self, *exc):
        self.exit = stop(self.proc)
        return False

    def clean_exit(self):
        return self.exit == 0


# ---------------------------------------------------------------- echo runs

def run_load(server, conns, args):
    """weft-load against a running server: its JSON result, or None."""
    argv = [os.path.join(PERF_BIN, "weft-load"), f"127.0.0.1:{server.port}",
            "-c", str(conns), "-d", str(args.duration), "-w", str(args.warmup),
            "-t", str(args.threads), "--pid", str(server.proc.pid),
            "--label", f"{server.name} {conns}", "--json",
            "--progress", "tty" if TTY else "plain"]
    p = spawn(argv, False, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate()
    forget(p)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    note(f"weft-load against {server.name} failed (exit {p.returncode})")
    return None


def echo_run(name, conns, args, tag):
    """One server, one load run. Returns the result dict or None."""
    if name == "threads" and thread_headroom() < conns + 500:
        note(f"only {thread_headroom()} more threads allowed (kernel pid_max/threads-max): "
             f"the thread-per-connection peer is skipped at {conns} connections")
        return None
    status(f"c10k: [{name}] starting the server for {conns} connections")
    try:
        with Server("echo", name, args.workers, tag) as s:
            r = run_load(s, conns, args)
            if r is not None and not r.get("server_alive", True):
                note(f"the {name} server died during the run")
    except RuntimeError as e:
        note(str(e))
        return None
    if r is not None:
        r["server"] = name
        r["clean_exit"] = s.clean_exit()
        if not s.clean_exit():
            note(f"the {name} server did not exit cleanly on SIGTERM "
                 f"(status {s.exit}); log: {s.log}")
    return r


def available(kind, names, args):
    out = []
    for n in names:
        if (kind, n) not in KNOWN:
            sys.exit(f"c10k: unknown {kind} server '{n}'")
        if server_binary(kind, n) is None:
            if n.startswith("weft"):
                what = "examples/echo_server" if kind == "echo" else "examples/http_hello"
                sys.exit(f"c10k: build/release/{what} is missing: run tools/weft build release")
            else:
                note(f"the {n} {kind} peer is not available: skipped")
        else:
            out.append(n)
    return out


def median_result(runs):
    """The run with the median messages/s (one real run, so its fields stay consistent)."""
    runs = sorted(runs, key=lambda r: r["msgs_per_s"])
    return runs[len(runs) // 2]


def echo_comparison(args, names):
    results = {n: [] for n in names}
    for rnd in range(args.rounds):
        for n in names:
            r = echo_run(n, args.conns, args, f"{args.conns}-{rnd}")
            if r is not None:
                r["round"] = rnd
                results[n].append(r)
    clear_status()
    return {n: median_result(rs) for n, rs in results.items() if rs}, results


def fmt_num(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def print_echo_table(res, args):
    print(f"\nC10K echo: {args.conns:,} connections, 64-byte ping-pong, {args.duration:g} s "
          f"measured after {args.warmup:g} s warm-up, {args.threads} load thread(s)"
          + (f", median of {args.rounds} rounds" if args.rounds > 1 else ""))
    hdr = ["server", "conns", "msgs/s", "p50 ms", "p99 ms", "p999 ms", "errors",
           "CPU us/msg", "cores", "peak RSS MB", "clean exit"]
    rows = []
    for n, r in res.items():
        rows.append([n, fmt_num(r["opened"]), fmt_num(r["msgs_per_s"]),
                     fmt_num(r["p50_us"] / 1e3, 1), fmt_num(r["p99_us"] / 1e3, 1),
                     fmt_num(r["p999_us"] / 1e3, 1), str(r["errors"] + r["failed_conns"]),
                     fmt_num(r.get("server_cpu_us_per_msg"), 2),
                     fmt_num(r.get("server_cores"), 2),
                     fmt_num(r.get("server_peak_rss_kb", 0) / 1024, 1),
                     "yes" if r.get("clean_exit") else "NO"])
    print_table(hdr, rows)


def print_table(hdr, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(hdr))
    for r in rows:
        print(line(r))


def ratio(a, b):
    return a / b if a is not None and b else None


def print_echo_ratios(res):
    w = res.get("weft")
    if w is None:
        print("(no weft result: ratios need examples/echo_server)")
        return
    checks = []
    for peer in ("go", "epoll", "threads"):
        p = res.get(peer)
        if p is None:
            continue
        print(f"weft/{peer}: CPU per message {ratio(w['server_cpu_us_per_msg'], p['server_cpu_us_per_msg']):.2f}x, "
              f"msgs/s {ratio(w['msgs_per_s'], p['msgs_per_s']):.2f}x, "
              f"p99 {ratio(w['p99_us'], p['p99_us']):.2f}x, "
              f"peak RSS {ratio(w['server_peak_rss_kb'], p['server_peak_rss_kb']):.2f}x")
    b = res.get("weft-reader")
    if b:
        cost = ratio(b["server_cpu_us_per_msg"], w["server_cpu_us_per_msg"])
        print(f"weft-reader/weft: CPU per message {cost:.3f}x ({b['server_cpu_us_per_msg']:.2f} vs "
              f"{w['server_cpu_us_per_msg']:.2f} us), msgs/s "
              f"{ratio(b['msgs_per_s'], w['msgs_per_s']):.2f}x")
        checks.append(("the reader adds at most 5% CPU per message", cost <= 1.05))
    e, g = res.get("epoll"), res.get("go")
    if e:
        checks.append(("CPU/msg within 1.1x of epoll",
                       w["server_cpu_us_per_msg"] <= 1.1 * e["server_cpu_us_per_msg"]))
    if g:
        checks += [("msgs/s at least Go's", w["msgs_per_s"] >= g["msgs_per_s"]),
                   ("p99 no worse than Go's", w["p99_us"] <= g["p99_us"]),
                   ("peak RSS no more than Go's", w["server_peak_rss_kb"] <= g["server_peak_rss_kb"])]
    checks.append(("zero connection errors", w["errors"] + w["failed_conns"] == 0))
    print("targets: " + ", ".join(f"{c}: {'ok' if ok else 'MISSED'}" for c, ok in checks))


def print_reader_rounds(rounds):
    """weft-reader/weft CPU per message round by round: each round runs the two
    back to back, so on a noisy machine their ratio is steadier than the ratio of
    the two medians, which may come from different rounds."""
    reader = {r["round"]: r for r in rounds.get("weft-reader", [])}
    pairs = [(w, reader[w["round"]]) for w in rounds.get("weft", []) if w["round"] in reader]
    if len(pairs) < 2:
        return
    cost = [b["server_cpu_us_per_msg"] / w["server_cpu_us_per_msg"] for w, b in pairs
            if w["server_cpu_us_per_msg"]]
    print("weft-reader/weft CPU per message by round: "
          + ", ".join(f"{c:.3f}x ({b['server_cpu_us_per_msg']:.2f} vs {w['server_cpu_us_per_msg']:.2f} us)"
                      for c, (w, b) in zip(cost, pairs))
          + f"; median {sorted(cost)[len(cost) // 2]:.3f}x")


# ---------------------------------------------------------------- HTTP runs

WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_ERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_PCT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def parse_wrk(out):
    m = WRK_RPS.search(out)
    if not m:
        return None
    r = {"rps": float(m.group(1)), "errors": 0}
    e = WRK_ERR.search(out)
    if e:
        r["errors"] += sum(int(x) for x in e.groups())
    e = WRK_NON2XX.search(out)
    if e:
        r["errors"] += int(e.group(1))
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    for pct, v, unit in WRK_PCT.findall(out):
        r[f"p{pct}_ms"] = float(v) * scale[unit]
    return r


def wrk_run(name, args, tag):
    label = f"[{name}] wrk -t{args.wrk_threads} -c{args.http_conns} -d{args.http_duration}s"
    status(f"c10k: {label}: starting the server")
    try:
        with Server("http", name, args.workers, tag) as s:
            argv = ["wrk", f"-t{args.wrk_threads}", f"-c{args.http_conns}",
                    f"-d{args.http_duration}s", "--latency", f"http://127.0.0.1:{s.port}/"]
            p = spawn(argv, False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            t0 = time.monotonic()
            while p.poll() is None:
                left = max(0.0, args.http_duration - (time.monotonic() - t0))
                if TTY:
                    status(f"c10k: {label}: {left:.0f}s left")
                try:
                    p.wait(0.5)
                except subprocess.TimeoutExpired:
                    pass
            out = p.stdout.read()
            forget(p)
    except RuntimeError as e:
        note(str(e))
        return None
    r = parse_wrk(out)
    if r is None:
        note(f"wrk against {name} printed no result:\n{out}")
        return None
    r["server"], r["clean_exit"] = name, s.clean_exit()
    if not s.clean_exit():
        note(f"the {name} HTTP server did not exit cleanly on SIGTERM (status {s.exit}); log: {s.log}")
    if not TTY:
        status(f"c10k: {label}: {r['rps']:,.0f} requests/s")
    return r


def http_comparison(args, names):
    runs = {n: [] for n in names}
    for rnd in range(args.rounds):
        for n in names:  # interleaved: each round visits every server
            r = wrk_run(n, args, str(rnd))
            if r is not None:
                runs[n].append(r)
    clear_status()
    res = {}
    for n, rs in runs.items():
        if rs:
            rs = sorted(rs, key=lambda r: r["rps"])
            res[n] = rs[len(rs) // 2]
    return res


def print_http_table(res, args):
    print(f"\nHTTP hello: wrk -t{args.wrk_threads} -c{args.http_conns} -d{args.http_duration}s"
          + (f", median of {args.rounds} interleaved rounds" if args.rounds > 1 else ""))
    rows = [[n, fmt_num(r["rps"]), fmt_num(r.get("p50_ms"), 2), fmt_num(r.get("p99_ms"), 2),
             str(r["errors"]), "yes" if r["clean_exit"] else "NO"] for n, r in res.items()]
    print_table(["server", "requests/s", "p50 ms", "p99 ms", "errors", "clean exit"], rows)
    w = res.get("weft")
    if w:
        for peer in ("nginx", "go"):
            if peer in res:
                print(f"weft/{peer}: requests/s {w['rps'] / res[peer]['rps']:.2f}x")
        if "nginx" in res:
            ok = w["rps"] >= res["nginx"]["rps"]
            print(f"target: requests/s at least nginx's: {'ok' if ok else 'MISSED'}")


# ---------------------------------------------------------------- plot

def sweep(args, names):
    """The --plot servers at each connection count, interleaved."""
    out = {n: {} for n in names}
    for c in PLOT_CONNS:
        for n in names:
            r = echo_run(n, c, args.sweep, f"sweep-{c}")
            if r is not None:
                out[n][c] = r
    clear_status()
    return out


def write_plot(data, names):
    dat = os.path.join(ROOT, "perf", "c10k.dat")
    png = os.path.join(ROOT, "perf", "c10k.png")
    with open(dat, "w") as f:
        f.write("# tools/c10k.py --plot: echo messages/s and p99 round trip (ms) by connections\n")
        f.write("conns " + " ".join(f"{n}_msgs_per_s {n}_p99_ms" for n in names) + "\n")
        for c in PLOT_CONNS:
            cells = []
            for n in names:
                r = data[n].get(c)
                cells += [f"{r['msgs_per_s']:.0f}", f"{r['p99_us'] / 1e3:.2f}"] if r else ["?", "?"]
            f.write(f"{c} " + " ".join(cells) + "\n")
    if shutil.which("gnuplot") is None:
        note(f"gnuplot is not installed: wrote {dat} only")
        return
    style = {"weft": "lc rgb '#d62728' lw 2 pt 7", "go": "lc rgb '#00add8' lw 2 pt 5",
             "epoll": "lc rgb '#7f7f7f' lw 1.5 dt 2 pt 6", "threads": "lc rgb '#ff7f0e' lw 1.5 pt 9"}
    plots = lambda col: ", ".join(  # noqa: E731
        f"'{dat}' using 1:{2 + 2 * i + col} with linespoints {style.get(n, 'lw 2')} title '{n}'"
        for i, n in enumerate(names))
    script = f"""
set terminal pngcairo size 1100,440 font 'sans,10'
set output '{png}'
set datafile missing '?'
set key autotitle columnhead
set logscale x
set xtics ('1k' 1000, '2k' 2000, '5k' 5000, '10k' 10000)
set xrange [800:12500]
set grid
set multiplot layout 1,2 title 'C10K echo (64-byte ping-pong, loopback, 2 cores shared with the load generator)'
set title 'throughput'
set key top right
set xlabel 'connections'
set ylabel 'messages/s'
set yrange [0:*]
set format y '%.0s%c'
plot {plots(0)}
set title 'p99 round trip'
set key top left
set ylabel 'ms'
set format y '%g'
plot {plots(1)}
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, stderr=subprocess.PIPE)
    if r.returncode != 0:
        note(f"gnuplot failed: {r.stderr}")
    else:
        print(f"\nplot: {os.path.relpath(png, ROOT)} (data: {os.path.relpath(dat, ROOT)})")


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(prog="tools/weft c10k", description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true",
                    help="a quick run (2,000 connections, 3 s) as tools/weft bench uses")
    ap.add_argument("--plot", action="store_true",
                    help="also sweep 1k/2k/5k/10k connections for weft, Go and epoll (5 s each); "
                    "write perf/c10k.png and perf/c10k.dat")
    ap.add_argument("--conns", type=int, help="echo connections (default 10,000; --short 2,000)")
    ap.add_argument("--duration", type=float, help="measured seconds per echo run (default 10; --short 3)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per echo run (default 2; --short 1)")
    ap.add_argument("--threads", type=int, default=1, help="weft-load threads (default 1)")
    ap.add_argument("--workers", type=int, default=0,
                    help="server threads (WEFT_WORKERS, GOMAXPROCS, epoll threads; default: all cores)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="interleaved rounds; tables show the median run (default 1)")
    ap.add_argument("--servers", default=",".join(ECHO_SERVERS),
                    help="echo servers, comma-separated (default weft,weft-reader,go,epoll,threads)")
    ap.add_argument("--plot-servers", default="weft,go,epoll",
                    help="servers in the --plot sweep (default weft,go,epoll: epoll is the floor)")
    ap.add_argument("--no-echo", action="store_true", help="skip the echo comparison")
    ap.add_argument("--no-http", action="store_true", help="skip the wrk comparison")
    ap.add_argument("--http-conns", type=int, default=1000, help="wrk connections (default 1,000)")
    ap.add_argument("--http-duration", type=int, help="wrk seconds (default 10; --short 3)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--examples", metavar="DIR",
                    help="where weft's echo_server and http_hello are (default build/release/examples)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write all results as JSON here (always: build/c10k/last.json)")
    a = ap.parse_args()
    a.conns = a.conns or (2000 if a.short else 10000)
    a.duration = a.duration or (3.0 if a.short else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.short else 2.0)
    a.http_duration = a.http_duration or (3 if a.short else 10)
    # The --plot sweep runs 8 servers: shorter windows keep it near a minute.
    a.sweep = argparse.Namespace(**vars(a))
    a.sweep.duration, a.sweep.warmup = min(a.duration, 5.0), min(a.warmup, 1.0)
    return a


def preflight(args):
    load = os.path.join(PERF_BIN, "weft-load")
    if not os.access(load, os.X_OK):
        sys.exit("c10k: build/release/perf/weft-load is missing: run tools/weft build release")
    raise_fd_limit(max(args.conns, args.http_conns) + 1000)
    ports = read_int_pair("/proc/sys/net/ipv4/ip_local_port_range")
    if ports and ports[1] - ports[0] + 1 < max(PLOT_CONNS if args.plot else [args.conns]):
        note(f"the local port range {ports[0]}-{ports[1]} is too small for {args.conns} "
             "connections to one port; widen net.ipv4.ip_local_port_range")
    os.makedirs(WORK, exist_ok=True)
    reap_leftovers()
    build_go()


def main():
    global EXAMPLES
    args = parse_args()
    if args.examples:
        EXAMPLES = os.path.abspath(args.examples)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    results = {"args": {k: v for k, v in vars(args).items() if k != "sweep"}}
    try:
        preflight(args)
        if not args.no_echo:
            names = available("echo", [s for s in args.servers.split(",") if s], args)
            res, rounds = echo_comparison(args, names)
            results["echo"] = res
            results["echo_rounds"] = rounds
            print_echo_table(res, args)
            print_echo_ratios(res)
            print_reader_rounds(rounds)
            sys.stdout.flush()
        if not args.no_http:
            if shutil.which("wrk") is None:
                note("wrk is not installed: the HTTP comparison is skipped")
            else:
                res = http_comparison(args, available("http", HTTP_SERVERS, args))
                results["http"] = res
                print_http_table(res, args)
                sys.stdout.flush()
        if args.plot:
            names = available("echo", [s for s in args.plot_servers.split(",") if s], args)
            data = sweep(args, names)
            results["sweep"] = {n: {str(c): r for c, r in d.items()} for n, d in data.items()}
            write_plot(data, names)
    except KeyboardInterrupt:
        clear_status()
        note("interrupted")
        return 130
    finally:
        kill_all()
        sys.stdout.flush()
    for path in filter(None, [os.path.join(WORK, "last.json"), args.json]):
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
    bad = [r for part in ("echo", "http") for r in results.get(part, {}).values()
           if r.get("errors", 0) or r.get("failed_conns", 0) or not r.get("clean_exit", True)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
