// main.cpp: boost-fiber-bench's command line and shared harness (harness.hpp).
//
//   boost-fiber-bench WORKLOAD [--workers N] [--n COUNT] [--json]

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace peer {
namespace {
std::vector<workload>& registry() {
  static std::vector<workload> r;
  return r;
}
}  // namespace

bool add(const workload& w) {
  registry().push_back(w);
  return true;
}

void fail(const char* fmt, ...) {
  std::fprintf(stderr, "boost-fiber-bench: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::exit(1);
}

std::uint64_t rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  fail("no VmRSS in /proc/self/status");
}

std::size_t stack_bytes() {
  static const std::size_t bytes = [] {
    const char* e = std::getenv("BOOST_FIBER_BENCH_STACK");
    return e != nullptr ? std::strtoull(e, nullptr, 10) : std::size_t{8 * 1024};
  }();
  return bytes;
}

bool guard_stacks() {
  static const bool on = [] {
    const char* e = std::getenv("BOOST_FIBER_BENCH_GUARD");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return on;
}

void run_fibers(unsigned workers, const std::function<void()>& main_fn) {
  namespace bf = boost::fibers;
  if (workers <= 1) {
    bf::use_scheduling_algorithm<bf::algo::round_robin>();
    main_fn();
    return;
  }
  // BOOST_FIBER_BENCH_SUSPEND=1: idle threads sleep on a condition variable
  // instead of spinning (work_stealing's second argument; default false).
  const char* e = std::getenv("BOOST_FIBER_BENCH_SUSPEND");
  const bool suspend = e != nullptr && std::strcmp(e, "1") == 0;
  bf::mutex mu;
  bf::condition_variable_any cv;
  bool finished = false;
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < workers; ++i) {
    threads.emplace_back([&] {
      bf::use_scheduling_algorithm<bf::algo::work_stealing>(workers, suspend);
      std::unique_lock<bf::mutex> lk(mu);
      cv.wait(lk, [&] { return finished; });
    });
  }
  // Returns once all `workers` schedulers exist (work_stealing's barrier).
  bf::use_scheduling_algorithm<bf::algo::work_stealing>(workers, suspend);
  main_fn();
  {
    std::lock_guard<bf::mutex> lk(mu);
    finished = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
}

}  // namespace peer

static int usage() {
  std::fprintf(stderr,
               "usage: boost-fiber-bench WORKLOAD [--workers N] [--n COUNT] [--json]\nworkloads:");
  for (auto& w : peer::registry()) std::fprintf(stderr, " %s", w.name);
  std::fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const peer::workload* w = nullptr;
  for (auto& c : peer::registry()) {
    if (std::strcmp(c.name, argv[1]) == 0) w = &c;
  }
  if (w == nullptr) {
    std::fprintf(stderr, "boost-fiber-bench: unknown workload '%s'\n", argv[1]);
    return usage();
  }
  peer::params p;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
      p.workers = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (std::strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
      p.n = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "boost-fiber-bench: bad argument '%s'\n", argv[i]);
      return usage();
    }
  }
  if (p.workers == 0) {
    p.workers = w->default_workers != 0 ? w->default_workers
                                        : std::max(1u, std::thread::hardware_concurrency());
  }
  if (p.n == 0) p.n = w->default_n;
  peer::result r;
  peer::run_fibers(p.workers, [&] { r = w->fn(p); });
  if (json) {
    std::printf(
        "{\"bench\":\"%s\",\"impl\":\"boost_fiber\",\"workers\":%u,\"n\":%llu,\"value\":%.3f,"
        "\"unit\":\"%s\"",
        w->name, p.workers, static_cast<unsigned long long>(p.n), r.value, w->unit);
    for (auto& [k, v] : r.extra) std::printf(",\"%s\":%.3f", k.c_str(), v);
    std::printf("}\n");
  } else {
    std::printf("%-10s boost workers=%-3u n=%-10llu %12.2f %s", w->name, p.workers,
                static_cast<unsigned long long>(p.n), r.value, w->unit);
    for (auto& [k, v] : r.extra) std::printf("  %s=%.2f", k.c_str(), v);
    std::printf("\n");
  }
  return 0;
}
