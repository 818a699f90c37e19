// weft-load: the C10K echo load generator (perf/README-c10k.md).
//
// The main thread is the coordinator: it starts the load threads, moves the
// phase connect -> run (warm-up) -> measure -> drain -> stop, samples the
// server's /proc counters at the exact edges of the measured window, prints
// progress, and reports. The load threads (client.hpp) do all socket work.
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "options.hpp"
#include "proc_stat.hpp"

namespace load {
namespace {

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// progress: one updating line on a terminal, else a plain line per milestone.
class progress {
 public:
  progress(progress_mode m, std::string label) : label_(std::move(label)) {
    if (m == progress_mode::automatic)
      m = isatty(STDERR_FILENO) ? progress_mode::tty : progress_mode::plain;
    mode_ = m;
    if (!label_.empty()) label_ = "[" + label_ + "] ";
  }
  // show: `milestone` lines are the ones printed in plain mode.
  void show(const std::string& text, bool milestone) {
    if (mode_ == progress_mode::tty) {
      std::fprintf(stderr, "\r\033[Kweft-load: %s%s", label_.c_str(), text.c_str());
      std::fflush(stderr);
    } else if (mode_ == progress_mode::plain && milestone) {
      std::fprintf(stderr, "weft-load: %s%s\n", label_.c_str(), text.c_str());
    }
  }
  void clear() {
    if (mode_ == progress_mode::tty) std::fputs("\r\033[K", stderr);
  }

 private:
  progress_mode mode_;
  std::string label_;
};

struct live_sum {
  std::uint64_t opened = 0, failed = 0, messages = 0, errors = 0, outstanding = 0;
};

struct run_state {
  const options& opt;
  std::atomic<int> ph{static_cast<int>(phase::connect)};
  std::vector<std::unique_ptr<client_thread>> clients;
  std::vector<std::thread> threads;
  progress prog;

  explicit run_state(const options& o) : opt(o), prog(o.progress, o.label) {}

  live_sum sum() {
    live_sum s;
    for (auto& c : clients) {
      live_counters& l = c->live();
      s.opened += l.opened.load(std::memory_order_relaxed);
      s.failed += l.failed.load(std::memory_order_relaxed);
      s.messages += l.messages.load(std::memory_order_relaxed);
      s.errors += l.errors.load(std::memory_order_relaxed);
      s.outstanding += l.outstanding.load(std::memory_order_relaxed);
    }
    return s;
  }
  void set_phase(phase p) {
    ph.store(static_cast<int>(p), std::memory_order_release);  // pairs with client_thread::run
    for (auto& c : clients) c->wake();
  }
};

std::string fmt(const char* f, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// connect_phase: until every connection is opened or given up, or the deadline.
double connect_phase(run_state& rs) {
  auto t0 = clock_type::now();
  unsigned conns = rs.opt.client.conns;
  double next_line = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    live_sum s = rs.sum();
    double t = since(t0);
    bool done = s.opened + s.failed >= conns || t >= rs.opt.connect_deadline_s;
    bool milestone = done || t >= next_line;
    if (milestone) next_line = t + 5;
    rs.prog.show(
        fmt("connecting: %.0f/%.0f opened, %.0f errors", double(s.opened), conns, double(s.errors)),
        milestone);
    if (done) return t;
  }
}

// pace: sleeps until `end` seconds after t0, showing `what` with seconds left and the rate.
void pace(run_state& rs, clock_type::time_point t0, double end, const char* what) {
  std::uint64_t last_msgs = rs.sum().messages;
  auto last_t = clock_type::now();
  double next_line = 0;
  for (;;) {
    double left = end - since(t0);
    if (left <= 0) return;
    std::this_thread::sleep_for(std::chrono::duration<double>(left < 0.25 ? left : 0.25));
    live_sum s = rs.sum();
    double dt = since(last_t);
    double rate = dt > 0 ? double(s.messages - last_msgs) / dt : 0;
    last_msgs = s.messages;
    last_t = clock_type::now();
    left = end - since(t0);
    bool milestone = since(t0) >= next_line;
    if (milestone) next_line = since(t0) + 5;
    rs.prog.show(std::string(what) + fmt(": %.0fs left, %.0f msg/s, %.0f errors",
                                         left > 0 ? std::ceil(left) : 0.0, rate, double(s.errors)),
                 milestone);
  }
}

struct window {
  double seconds = 0;
  cpu_sample server0, server1, self0, self1;
  mem_sample server_mem;
};

window measure(run_state& rs) {
  window w;
  pid_t pid = rs.opt.server_pid;
  if (pid) w.server0 = read_cpu(pid);
  w.self0 = read_cpu(0);
  auto t0 = clock_type::now();
  rs.set_phase(phase::measure);
  pace(rs, t0, rs.opt.duration_s, "measuring");
  rs.set_phase(phase::drain);
  w.seconds = since(t0);
  if (pid) w.server1 = read_cpu(pid);
  w.self1 = read_cpu(0);
  if (pid) w.server_mem = read_mem(pid);
  return w;
}

void drain(run_state& rs) {
  auto t0 = clock_type::now();
  while (rs.sum().outstanding > 0 && since(t0) < rs.opt.drain_timeout_s)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  rs.set_phase(phase::stop);
  for (auto& t : rs.threads) t.join();
}

totals merge(run_state& rs) {
  totals all;
  for (auto& c : rs.clients) {
    const totals& t = c->result();
    all.rtt_ns.merge(t.rtt_ns);
    all.measured += t.measured;
    all.opened += t.opened;
    all.failed += t.failed;
    all.connect_errors += t.connect_errors;
    all.io_errors += t.io_errors;
    all.verify_errors += t.verify_errors;
    all.unanswered += t.unanswered;
  }
  return all;
}

// summary: the numbers both report formats print.
struct summary {
  double rate = 0, per_msg = 0, server_cpu = 0, client_cpu = 0, server_cores = 0, client_cores = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0, mean_us = 0;
  bool server_alive = true;
  std::uint64_t errors = 0;
};

summary summarize(const options& o, const window& w, const totals& t) {
  summary s;
  s.rate = w.seconds > 0 ? double(t.measured) / w.seconds : 0;
  s.per_msg = t.measured ? 1e6 / double(t.measured) : 0;  // seconds -> us per message
  if (o.server_pid && w.server0.ok && w.server1.ok)
    s.server_cpu = w.server1.cpu_s - w.server0.cpu_s;
  if (w.self0.ok && w.self1.ok) s.client_cpu = w.self1.cpu_s - w.self0.cpu_s;
  if (w.seconds > 0) {
    s.server_cores = s.server_cpu / w.seconds;
    s.client_cores = s.client_cpu / w.seconds;
  }
  s.server_alive = !o.server_pid || (w.server1.ok && w.server1.state != 'Z');
  s.errors = t.connect_errors + t.io_errors + t.verify_errors + t.unanswered;
  s.p50_us = double(t.rtt_ns.percentile(0.5)) / 1e3;
  s.p99_us = double(t.rtt_ns.percentile(0.99)) / 1e3;
  s.p999_us = double(t.rtt_ns.percentile(0.999)) / 1e3;
  s.max_us = double(t.rtt_ns.max()) / 1e3;
  s.mean_us = t.rtt_ns.mean() / 1e3;
  return s;
}

void print_json(const options& o, double connect_s, const window& w, const totals& t,
                const summary& s) {
  std::printf(
      "{\"tool\":\"weft-load\",\"label\":\"%s\",\"target\":\"%s\",\"conns\":%u,"
      "\"opened\":%" PRIu64
      ",\"threads\":%u,\"warmup_s\":%g,\"duration_s\":%.3f,"
      "\"connect_s\":%.3f,\"messages\":%" PRIu64
      ",\"msgs_per_s\":%.1f,\"p50_us\":%.1f,"
      "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,\"errors\":%" PRIu64
      ",\"connect_errors\":%" PRIu64 ",\"io_errors\":%" PRIu64 ",\"verify_errors\":%" PRIu64
      ",\"unanswered\":%" PRIu64 ",\"failed_conns\":%" PRIu64
      ",\"client_cpu_us_per_msg\":%.3f,\"client_cores\":%.3f",
      o.label.c_str(), o.target.c_str(), o.client.conns, t.opened, o.client.threads, o.warmup_s,
      w.seconds, connect_s, t.measured, s.rate, s.p50_us, s.p99_us, s.p999_us, s.max_us, s.mean_us,
      s.errors, t.connect_errors, t.io_errors, t.verify_errors, t.unanswered, t.failed,
      s.client_cpu * s.per_msg, s.client_cores);
  if (o.server_pid)
    std::printf(
        ",\"server_pid\":%d,\"server_alive\":%s,\"server_cpu_s\":%.3f,"
        "\"server_cpu_us_per_msg\":%.3f,\"server_cores\":%.3f,"
        "\"server_peak_rss_kb\":%" PRIu64 ",\"server_rss_kb\":%" PRIu64 ",\"server_threads\":%u",
        int(o.server_pid), s.server_alive ? "true" : "false", s.server_cpu,
        s.server_cpu * s.per_msg, s.server_cores, w.server_mem.peak_rss_kb, w.server_mem.rss_kb,
        w.server1.threads);
  std::printf("}\n");
}

void print_text(const options& o, double connect_s, const window& w, const totals& t,
                const summary& s) {
  std::printf("target        %s%s%s\n", o.target.c_str(), o.label.empty() ? "" : "  ",
              o.label.c_str());
  std::printf("connections   %" PRIu64 " of %u opened in %.2f s (%u load threads)\n", t.opened,
              o.client.conns, connect_s, o.client.threads);
  std::printf("messages/s    %.0f  (%" PRIu64 " in %.2f s)\n", s.rate, t.measured, w.seconds);
  std::printf("round trip    p50 %.1f us  p99 %.1f us  p999 %.1f us  max %.1f us\n", s.p50_us,
              s.p99_us, s.p999_us, s.max_us);
  std::printf("errors        %" PRIu64 " (connect %" PRIu64 ", io %" PRIu64 ", verify %" PRIu64
              ", unanswered %" PRIu64 "; %" PRIu64 " connections never opened)\n",
              s.errors, t.connect_errors, t.io_errors, t.verify_errors, t.unanswered, t.failed);
  std::printf("client CPU    %.2f us/msg (%.2f cores)\n", s.client_cpu * s.per_msg, s.client_cores);
  if (o.server_pid)
    std::printf("server CPU    %.2f us/msg (%.2f cores), peak RSS %.1f MB, %u threads%s\n",
                s.server_cpu * s.per_msg, s.server_cores, double(w.server_mem.peak_rss_kb) / 1024.0,
                w.server1.threads, s.server_alive ? "" : "  SERVER DIED");
}

// report: one JSON line, or a readable block. Returns the exit status: 1 when
// anything failed (errors, connections never opened, the server died).
int report(const options& o, double connect_s, const window& w, const totals& t) {
  summary s = summarize(o, w, t);
  if (o.json)
    print_json(o, connect_s, w, t, s);
  else
    print_text(o, connect_s, w, t, s);
  std::fflush(stdout);
  return (s.errors || t.failed || !s.server_alive) ? 1 : 0;
}

int run(const options& o) {
  run_state rs(o);
  unsigned n = o.client.threads;
  for (unsigned i = 0; i < n; ++i) {
    unsigned count = o.client.conns / n + (i < o.client.conns % n ? 1 : 0);
    rs.clients.push_back(std::make_unique<client_thread>(o.client, rs.ph, i, n, count));
  }
  for (auto& c : rs.clients) rs.threads.emplace_back([p = c.get()] { p->run(); });
  double connect_s = connect_phase(rs);
  if (rs.sum().opened == 0) {  // nothing to measure: report the failure at once
    rs.set_phase(phase::stop);
    for (auto& t : rs.threads) t.join();
    rs.prog.clear();
    std::fprintf(stderr, "weft-load: no connection to %s could be opened\n", o.target.c_str());
    window none;
    if (o.server_pid) none.server1 = read_cpu(o.server_pid);
    return report(o, connect_s, none, merge(rs));
  }
  auto t0 = clock_type::now();
  rs.set_phase(phase::run);
  pace(rs, t0, o.warmup_s, "warm-up");
  window w = measure(rs);
  drain(rs);
  rs.prog.clear();
  return report(o, connect_s, w, merge(rs));
}

}  // namespace
}  // namespace load

int main(int argc, char** argv) {
  load::options o = load::parse_options(argc, argv);
  if (!load::resolve(o.target, o.client)) return 2;
  if (!load::raise_fd_limit(o.client.conns + 64 + 2 * o.client.threads)) return 2;
  if (!load::check_port_range(o.client.conns)) return 2;
  if (o.server_pid && !load::read_cpu(o.server_pid).ok) {
    std::fprintf(stderr, "weft-load: no process %d\n", int(o.server_pid));
    return 2;
  }
  try {
    return load::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nweft-load: %s\n", e.what());
    return 3;
  }
}
