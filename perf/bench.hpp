#pragma once
// bench.hpp: the weft-bench workload registry and result reporting.
//
// Each workload registers itself with WEFT_BENCH(name, unit); main() parses
//   weft-bench WORKLOAD [--workers N] [--n COUNT] [--json]
// and prints one line: a JSON object with --json, else a readable row.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace bench {

struct params {
  unsigned workers = 0;  // 0 = the workload's default
  std::uint64_t n = 0;   // 0 = the workload's default
};

// result: `value` in `unit`, plus optional extra numeric fields.
struct result {
  double value = 0;
  std::map<std::string, double> extra;
};

using workload_fn = result (*)(params& p);

struct workload {
  const char* name;
  const char* unit;
  unsigned default_workers;
  std::uint64_t default_n;
  workload_fn fn;
};

bool add(const workload& w);

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// rss_bytes: VmRSS of this process.
std::uint64_t rss_bytes();

// minor_faults: this process's minor page faults so far (getrusage
// RUSAGE_SELF ru_minflt, every thread). A workload that stores
// extra["minor_faults"] itself reports the faults of its measured part;
// otherwise main() reports the delta around the whole workload function.
double minor_faults();

}  // namespace bench

#define WEFT_BENCH_CAT2(a, b) a##b
#define WEFT_BENCH_CAT(a, b) WEFT_BENCH_CAT2(a, b)
#define WEFT_BENCH(name, unit, workers, n, fn)              \
  static const bool WEFT_BENCH_CAT(registered_, __LINE__) = \
      ::bench::add({name, unit, workers, n, fn})
