// perturb.cpp: schedule perturbation (weft/detail/perturb.hpp).

#include "weft/detail/perturb.hpp"

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/sched_internal.hpp"
#include "weft/detail/park.hpp"

namespace weft::detail {

std::atomic<bool> g_perturb{false};

namespace {

// Added to g_preempt_requests while a run is perturbed, so every preempt
// point takes preempt_slow (perturb.hpp, "Cost"); far above any count of
// real requests (one per processor).
constexpr std::uint32_t preempt_bias = std::uint32_t{1} << 24;

// Written once, by perturb_init (release), before the bias that sends
// preempt points here is applied. A plain thread that began before run()
// reaches draw() through that bias, which is a relaxed count, so it reads
// the seed with acquire rather than relying on the count to carry it.
std::atomic<std::uint64_t> g_seed{0};
std::atomic<std::uint64_t> g_epoch{0};    // runs so far (relaxed: a seed input)
std::atomic<std::uint32_t> g_ordinal{0};  // threads without a machine, in order of first use
bool g_bias_applied = false;              // run()'s thread (runs are serialised by run_main)

std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct prng {
  std::uint64_t state = 0;
  std::uint64_t epoch = ~std::uint64_t{0};
};

// The calling thread's generator, seeded on first use in each run from the
// seed, the run and the thread. Reached only through this function, which
// the compiler cannot fold across a fiber switch (a fiber may resume on
// another thread, and compilers keep a thread_local's address in a register
// across calls: runtime/machine.hpp); no caller keeps the reference across one.
[[gnu::noinline]] prng& local_prng() noexcept {
  static thread_local prng r;
  const std::uint64_t e = g_epoch.load(std::memory_order_relaxed);
  if (r.epoch != e) {
    machine* m = current_m();
    const std::uint64_t key =
        m != nullptr ? std::uint64_t{m->id} + 1
                     : (std::uint64_t{1} << 32) + g_ordinal.fetch_add(1, std::memory_order_relaxed);
    r.state =
        mix(g_seed.load(std::memory_order_acquire) ^ mix(e * 0x9E3779B97F4A7C15ull ^ mix(key)));
    r.epoch = e;
  }
  return r;
}

std::uint64_t draw() noexcept {
  prng& r = local_prng();
  r.state += 0x9E3779B97F4A7C15ull;
  return mix(r.state);
}

void spin(std::uint64_t n) noexcept {
  for (std::uint64_t i = 0; i < n; ++i) cpu_relax();
}

void sleep_ns(std::int64_t ns) noexcept {
  timespec ts{0, static_cast<long>(ns)};
  ::nanosleep(&ts, nullptr);
}

// Delay profiles, in per-mille of draws. `heavy` for the windows where a
// lost wake-up or a use after free hides (a thread preempted there for
// hundreds of microseconds is what a loaded machine does); `light` where
// the point is on every operation and only needs to shake the order.
struct profile {
  unsigned spin, yield, short_sleep, long_sleep;  // the rest: nothing
};
constexpr profile heavy{150, 20, 15, 3};
constexpr profile light{100, 5, 2, 0};

const profile& profile_of(perturb_site s) noexcept {
  switch (s) {
    case perturb_site::park_resumed:
    case perturb_site::op_entry:
    case perturb_site::select_locks:
    case perturb_site::steal:
      return light;
    default:
      return heavy;
  }
}

std::uint64_t parse_seed(const char* v) noexcept {
  if (v == nullptr || *v == '\0') return 0;
  if (std::strcmp(v, "random") == 0 || std::strcmp(v, "1") == 0) {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    std::uint64_t s =
        mix(static_cast<std::uint64_t>(ts.tv_nsec) ^
            (static_cast<std::uint64_t>(::getpid()) << 32) ^ static_cast<std::uint64_t>(ts.tv_sec));
    s %= 1000000000000ull;  // short enough to type
    return s < 2 ? s + 2 : s;
  }
  char* end = nullptr;
  const unsigned long long s = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0') {
    std::fprintf(stderr, "weft: WEFT_PERTURB=\"%s\" is not a number; perturbation stays off\n", v);
    return 0;
  }
  return s;
}

}  // namespace

void perturb_init() noexcept {
  static const bool once = [] {
    const std::uint64_t seed = parse_seed(std::getenv("WEFT_PERTURB"));
    g_seed.store(seed, std::memory_order_release);
    if (seed != 0) {
      std::fprintf(stderr,
                   "weft: schedule perturbation on, seed %llu (replay: WEFT_PERTURB=%llu)\n",
                   static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
      // release: the threads a run starts see g_seed (their creation orders
      // it anyway); perturb_on() reads the flag relaxed.
      g_perturb.store(true, std::memory_order_release);
    }
    return true;
  }();
  (void)once;
}

std::uint64_t perturb_seed() noexcept { return g_seed.load(std::memory_order_acquire); }

void perturb_run_begin() noexcept {
  if (!perturb_on()) return;
  g_epoch.fetch_add(1, std::memory_order_relaxed);
  g_preempt_requests.fetch_add(preempt_bias, std::memory_order_relaxed);
  g_bias_applied = true;
}

void perturb_run_end() noexcept {
  if (!g_bias_applied) return;
  g_bias_applied = false;
  g_preempt_requests.fetch_sub(preempt_bias, std::memory_order_relaxed);
}

bool perturb_chance(unsigned one_in) noexcept { return draw() % one_in == 0; }

void perturb_slow(perturb_site s) noexcept {
  const profile& p = profile_of(s);
  const std::uint64_t r = draw();
  unsigned x = static_cast<unsigned>(r % 1000);
  const std::uint64_t arg = r >> 32;
  if (x < p.spin) return spin(1 + arg % 512);
  x -= p.spin;
  if (x < p.yield) {
    ::sched_yield();
    return;
  }
  x -= p.yield;
  if (x < p.short_sleep) return sleep_ns(1000 + static_cast<std::int64_t>(arg % 50000));
  x -= p.short_sleep;
  if (x < p.long_sleep) return sleep_ns(50000 + static_cast<std::int64_t>(arg % 950000));
}

void perturb_yield_point() noexcept {
  machine* m = current_m();
  if (m == nullptr) {
    perturb_slow(perturb_site::op_entry);  // a plain thread: delay it instead
    return;
  }
  if (m->curg == nullptr || m->in_blocking || m->p == nullptr ||
      g_sched->ph.load(std::memory_order_relaxed) != phase::running || !perturb_chance(4)) {
    return;
  }
  try {
    yield_current();
  } catch (...) {
    // Not reached while the phase is running; a fiber unwound later meets
    // its unwind at its next park (as in preempt_slow).
  }
}

}  // namespace weft::detail
