// time.cpp: sleep_until (weft/time.hpp).

#include "weft/time.hpp"

#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include "runtime/fiber.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/timers.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/sync.hpp"

namespace weft {

void detail::throw_nan_duration(const char* api) {
  throw std::invalid_argument(std::string(api) + ": the duration is NaN");
}

void sleep_until(std::chrono::steady_clock::time_point t) {
  const std::int64_t when = detail::steady_ns(t);
  if (when <= detail::now_ns()) return;
  detail::perturb(detail::perturb_site::timer_add);
  detail::waiter w;
  w.prepare();
  if (w.fiber_ == nullptr) {
    std::this_thread::sleep_until(t);
    return;
  }
  if (detail::forked_child()) detail::throw_forked_child("weft::sleep_until");
  // U6 (runtime.cpp): a destructor of a fiber unwound at shutdown does not
  // sleep. (Outside a destructor, park() throws the unwind again.)
  if (w.fiber_->unwinding && std::uncaught_exceptions() != 0) return;
  detail::timer tm;
  tm.when = when;
  tm.arg = &w;
  tm.fire = [](detail::timer* x) { detail::unpark(*static_cast<detail::waiter*>(x->arg)); };
  // Only the timer wakes w: it has left the heap when the fiber resumes.
  detail::g_timers.park_until(w, &tm, detail::wait_reason::sleep, &tm);
}

}  // namespace weft
