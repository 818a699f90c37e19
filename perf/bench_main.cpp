// bench_main.cpp: weft-bench's command line (see bench.hpp).

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace bench {
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

std::uint64_t rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

double minor_faults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_minflt);
}

}  // namespace bench

static int usage() {
  std::fprintf(stderr, "usage: weft-bench WORKLOAD [--workers N] [--n COUNT] [--json]\nworkloads:");
  for (auto& w : bench::registry()) std::fprintf(stderr, " %s", w.name);
  std::fprintf(stderr, "\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const bench::workload* w = nullptr;
  for (auto& c : bench::registry()) {
    if (std::strcmp(c.name, argv[1]) == 0) w = &c;
  }
  if (w == nullptr) {
    std::fprintf(stderr, "weft-bench: unknown workload '%s'\n", argv[1]);
    return usage();
  }
  bench::params p;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (std::strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
      p.workers = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (std::strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
      p.n = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "weft-bench: bad argument '%s'\n", argv[i]);
      return usage();
    }
  }
  if (p.workers == 0) {
    p.workers = w->default_workers != 0 ? w->default_workers
                                        : std::max(1u, std::thread::hardware_concurrency());
  }
  if (p.n == 0) p.n = w->default_n;
  const double faults0 = bench::minor_faults();
  bench::result r;
  try {
    r = w->fn(p);  // a wrong result throws out of run(), from the main fiber
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft-bench: %s: %s\n", w->name, e.what());
    return 1;
  }
  r.extra.try_emplace("minor_faults", bench::minor_faults() - faults0);
  if (json) {
    std::printf(
        "{\"bench\":\"%s\",\"impl\":\"weft\",\"workers\":%u,\"n\":%llu,\"value\":%.3f,\"unit\":\"%"
        "s\"",
        w->name, p.workers, static_cast<unsigned long long>(p.n), r.value, w->unit);
    for (auto& [k, v] : r.extra) std::printf(",\"%s\":%.3f", k.c_str(), v);
    std::printf("}\n");
  } else {
    std::printf("%-10s weft  workers=%-3u n=%-10llu %12.2f %s", w->name, p.workers,
                static_cast<unsigned long long>(p.n), r.value, w->unit);
    for (auto& [k, v] : r.extra) std::printf("  %s=%.2f", k.c_str(), v);
    std::printf("\n");
  }
  return 0;
}
