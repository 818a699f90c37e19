// stack_release_probe.cpp: what giving back the stack page of a
// long-parked fiber would cost, measured without weft (perf/RESULTS.md,
// "Idle stack pages of long-parked fibers").
//
// It lays out N stacks as weft does (64 KiB slots, only the top page
// touched), writes `used` bytes at the top of each (a parked echo fiber's
// frames and buffer), then for every stack copies those bytes into a
// packed side buffer and releases the page (MADV_DONTNEED), and finally
// copies them back, which faults the page in again: the release a
// scavenger would do for an idle fiber, and the restore its next wake
// would pay. A second thread spins in the same process, as a worker would,
// so that each release's TLB shootdown has a CPU to interrupt (`--alone`
// leaves it out).
//
//   build/release/perf/weft-stack-release-probe [--n 10000] [--used 2048] [--alone]

#include <sys/mman.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

constexpr std::size_t slot_bytes = 64 * 1024;
constexpr std::size_t page_bytes = 4096;

long rss_kib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<long>(resident * (page_bytes / 1024)) : -1;
}

long minor_faults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

void* map(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return p;
}

double us_per(std::chrono::steady_clock::duration d, int n) {
  return std::chrono::duration<double, std::micro>(d).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10000;
  std::size_t used = 2048;
  bool alone = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (a == "--used" && i + 1 < argc) {
      used = static_cast<std::size_t>(std::atol(argv[++i]));
    } else if (a == "--alone") {
      alone = true;
    } else {
      std::fprintf(stderr, "usage: %s [--n N] [--used BYTES] [--alone]\n", argv[0]);
      return 2;
    }
  }
  if (n <= 0 || used == 0 || used > page_bytes) {
    std::fprintf(stderr, "--n must be positive and --used within 1..%zu\n", page_bytes);
    return 2;
  }
  auto* stacks = static_cast<char*>(map(slot_bytes * static_cast<std::size_t>(n)));
  auto* side = static_cast<char*>(map(used * static_cast<std::size_t>(n)));
  std::atomic<bool> stop{false};
  std::thread other;
  if (!alone) {
    other = std::thread([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  const auto top = [&](int i) { return stacks + slot_bytes * static_cast<std::size_t>(i + 1); };

  const long rss_base = rss_kib();
  for (int i = 0; i < n; ++i) std::memset(top(i) - used, 0x5a, used);
  const long rss_stacks = rss_kib();
  std::memset(side, 0, used * static_cast<std::size_t>(n));  // the side buffers, warm

  using clk = std::chrono::steady_clock;
  const auto t0 = clk::now();
  for (int i = 0; i < n; ++i) {
    std::memcpy(side + used * static_cast<std::size_t>(i), top(i) - used, used);
    ::madvise(top(i) - page_bytes, page_bytes, MADV_DONTNEED);
  }
  const auto t1 = clk::now();
  const long rss_released = rss_kib();
  const long faults0 = minor_faults();
  const auto t2 = clk::now();
  for (int i = 0; i < n; ++i) {
    std::memcpy(top(i) - used, side + used * static_cast<std::size_t>(i), used);
  }
  const auto t3 = clk::now();
  const long faults1 = minor_faults();
  stop.store(true, std::memory_order_relaxed);
  if (other.joinable()) other.join();

  const auto per_stack = [&](long kib) { return static_cast<double>(kib) * 1024.0 / n; };
  std::printf("stacks %d, used bytes %zu, a spinning thread beside: %s\n", n, used,
              alone ? "no" : "yes");
  std::printf(
      "RSS per stack: %.0f B with the stacks touched, %.0f B after the release "
      "(side buffers included)\n",
      per_stack(rss_stacks - rss_base), per_stack(rss_released - rss_base));
  std::printf("release (copy out, madvise): %.2f us per stack\n", us_per(t1 - t0, n));
  std::printf("restore (fault, copy in): %.2f us per stack, %.2f faults per stack\n",
              us_per(t3 - t2, n), static_cast<double>(faults1 - faults0) / n);
  return 0;
}
