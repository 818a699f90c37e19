// chan.cpp: the non-template parts of channels (weft/chan.hpp,
// weft/detail/chan_core.hpp).

#include "weft/chan.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "runtime/scheduler.hpp"

namespace weft::detail {

void throw_closed_channel(const char* what) { throw closed_channel(what); }

void throw_capacity_too_large() { throw std::length_error("weft::chan: capacity too large"); }

void park_forever(wait_reason why) {
  waiter w;
  w.prepare();
  // Nobody ever unparks w: a fiber resumes only to be unwound (park
  // throws), an OS thread sleeps for good.
  park(
      w, [](void*) {}, nullptr, why, nullptr);
  std::fputs("weft: internal error: a party blocked forever was woken\n", stderr);
  std::abort();
}

std::uint64_t chan_rand() noexcept {
  // xorshift64*, one state per thread; read and written only here, and no
  // switch happens inside, so a migrating fiber cannot carry a stale
  // thread-local address across (DESIGN.md section 7).
  static thread_local std::uint64_t state = 0;
  std::uint64_t x = state;
  if (x == 0) {
    x = static_cast<std::uint64_t>(now_ns()) ^ reinterpret_cast<std::uintptr_t>(&state) ^
        0x9E3779B97F4A7C15ull;
    if (x == 0) x = 1;
  }
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

}  // namespace weft::detail
