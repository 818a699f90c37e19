// time.cpp: sleep_until (weft/time.hpp).

#include "weft/time.hpp"

#include <thread>

#include "runtime/scheduler.hpp"
#include "weft/sync.hpp"

namespace weft {

void sleep_until(std::chrono::steady_clock::time_point t) {
  const std::int64_t when = detail::steady_ns(t);
  if (when <= detail::now_ns()) return;
  detail::waiter w;
  w.prepare();
  if (w.fiber_ == nullptr) {
    std::this_thread::sleep_until(t);
    return;
  }
  detail::timer tm;
  tm.when = when;
  tm.arg = &w;
  tm.fire = [](detail::timer* x) { detail::unpark(*static_cast<detail::waiter*>(x->arg)); };
  detail::poller& pl = detail::g_sched->poll;
  pl.timers_lock().lock();
  pl.add_timer_locked(&tm);
  try {
    detail::park(w, pl.timers_lock(), detail::wait_reason::sleep, &tm, when);
  } catch (...) {
    // Unwound at shutdown: the timer must not outlive this frame.
    pl.timers_lock().lock();
    pl.cancel_timer_locked(&tm);
    pl.timers_lock().unlock();
    throw;
  }
}

}  // namespace weft
