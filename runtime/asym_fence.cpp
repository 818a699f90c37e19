// asym_fence.cpp: membarrier-backed asymmetric barriers (asym_fence.hpp).

#include "runtime/asym_fence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

namespace weft::detail {
namespace {

// A membarrier slower than this on average costs more than fencing the hot
// side would: ~10 ns per hot operation, against thieves and idlers that
// stall for microseconds (and stall their victims).
constexpr std::int64_t slow_membarrier_ns = 3000;
constexpr std::uint32_t min_samples = 16;

// Running average of membarrier's duration, in ns, scaled by 8 (avg8 = 8 *
// average). Updated by heavy-side callers with relaxed read-modify-write
// races tolerated: it only decides when to switch, and any estimate near
// the truth will do.
std::atomic<std::int64_t> g_avg8{0};
std::atomic<std::uint32_t> g_samples{0};

std::int64_t mono_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void membarrier() noexcept { ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0); }

void switch_to_symmetric() noexcept {
  int expected = asym_mode_asym;
  if (!g_asym_mode.compare_exchange_strong(expected, asym_mode_switching,
                                           std::memory_order_seq_cst)) {
    return;  // someone else is switching
  }
  membarrier();  // every thread passes a barrier after seeing `switching`
  g_asym_mode.store(asym_mode_symmetric, std::memory_order_release);
}

}  // namespace

std::atomic<int> g_asym_mode{asym_mode_symmetric};

void asym_fence_init() noexcept {
  // Decided once per process: once symmetric, stay so (the host that made
  // membarrier slow is still there for the next run).
  static const bool decided = [] {
    const long cmds = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    const bool ok = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                    ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    g_asym_mode.store(ok ? asym_mode_asym : asym_mode_symmetric, std::memory_order_relaxed);
    return true;
  }();
  (void)decided;
}

void asym_force_symmetric() noexcept {
  asym_fence_init();  // or the first run's init would choose asym again
  switch_to_symmetric();
}
bool asym_symmetric_for_test() noexcept { return asym_symmetric(); }

void asym_heavy() noexcept {
  full_fence();
  if (g_asym_mode.load(std::memory_order_acquire) == asym_mode_symmetric) return;
  const std::int64_t t0 = mono_ns();
  membarrier();
  const std::int64_t dt = mono_ns() - t0;
  // avg += (dt - avg) / 8, in units of avg8.
  const std::int64_t a = g_avg8.load(std::memory_order_relaxed);
  const std::int64_t next = a + dt - a / 8;
  g_avg8.store(next, std::memory_order_relaxed);
  if (g_samples.fetch_add(1, std::memory_order_relaxed) + 1 >= min_samples &&
      next / 8 > slow_membarrier_ns) {
    switch_to_symmetric();
  }
}

}  // namespace weft::detail
