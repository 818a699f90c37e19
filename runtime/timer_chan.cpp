// timer_chan.cpp: after() and ticker (weft/time.hpp): channels fed by
// runtime-owned timers on the poller's heap.
//
// Design
//   One allocation per after()/ticker: the channel (capacity 1) with its
//   timer in the channel's `extra` room, in the cache line that also holds
//   the channel's reference count (chan_core.hpp). The heap holds
//   a channel reference while the timer is queued, so the timer cannot be
//   freed under the poller; the timer's callback does a non-blocking send
//   (chan_state::offer) of the current time: a full channel drops the tick,
//   as Go's sendTime does. An after timer then drops the heap's reference;
//   a ticker stays queued (the poller re-arms it before the callback) until
//   stop() cancels it or the runtime disposes of it at shutdown (dispose
//   drops the heap's reference).
//   stop() must only touch the poller of a runtime that is alive: it runs on
//   a runtime thread (a fiber, or run()'s thread unwinding fibers, both
//   before the poller is destroyed) or pins the runtime (foreign_enter).
//   Unpinnable means no runtime (the timer was disposed with its run) or a
//   runtime shutting down (dispose will drop the reference): nothing to do.
//   Rejected: a separate timer allocation (two allocations per after(),
//   which a select loop with a timeout pays on every iteration).
//
// Invariants
//   A1  A timer is in the heap iff its index != npos (timer_heap.hpp T1),
//       and then the heap owns one reference to its channel.
//
// Lock order: timers lock < channel lock (the callbacks send under the
//   timers lock; nothing takes the timers lock while holding a channel's).

#include <new>
#include <stdexcept>
#include <string>

#include "runtime/scheduler.hpp"
#include "weft/time.hpp"

namespace weft {
namespace detail {
namespace {

using time_point = std::chrono::steady_clock::time_point;
using tstate = chan_state<time_point>;

// runtime_pin: keeps the running runtime (and its poller) alive for the
// scope, if there is one and it is not shutting down.
class runtime_pin {
 public:
  runtime_pin() noexcept {
    if (current_m() != nullptr) {
      ok_ = true;  // a runtime thread: the runtime outlives this call
    } else {
      foreign_ = true;
      ok_ = foreign_enter();
    }
  }
  ~runtime_pin() {
    if (foreign_ && ok_) foreign_exit();
  }
  runtime_pin(const runtime_pin&) = delete;
  runtime_pin& operator=(const runtime_pin&) = delete;
  bool ok() const noexcept { return ok_; }

 private:
  bool ok_ = false;
  bool foreign_ = false;
};

time_point from_ns(std::int64_t ns) noexcept {
  return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::nanoseconds(ns)));
}

void fire_once(timer* t) {
  auto* s = static_cast<tstate*>(t->arg);
  // Only the heap's reference left: no handle exists and none can be made
  // (handles come from handles), so nobody could receive the value: free
  // the channel without sending and without a locked decrement. A select
  // loop with a timeout abandons most of its timers this way, and this runs
  // under the timers lock that after() needs.
  // acquire: pairs with the release in the last handle's release(), so the
  // destruction sees everything done through that handle.
  if (s->refs.load(std::memory_order_acquire) == 1) {
    s->destroy(s);  // frees t
    return;
  }
  s->offer(from_ns(now_ns()));
  s->release();  // A1: the heap's reference; may free t
}

void fire_tick(timer* t) { static_cast<tstate*>(t->arg)->offer(from_ns(now_ns())); }

void dispose(timer* t) { static_cast<tstate*>(t->arg)->release(); }  // A1

[[noreturn]] void throw_no_runtime(const char* api) {
  throw std::logic_error(std::string(api) +
                         ": no runtime is running, or it is shutting down (the timer needs the "
                         "runtime's poller; call it inside weft::run)");
}

// make_timer_chan: a capacity-1 channel with its timer armed at `ns` from
// now (`period` > 0: a ticker). The caller holds a runtime_pin.
chan<time_point> make_timer_chan(std::int64_t ns, std::int64_t period, void (*fire)(timer*)) {
  static_assert(sizeof(timer) <= chan_base::extra_size && alignof(timer) <= 8);
  tstate* s = tstate::create(1);
  auto* t = ::new (static_cast<void*>(s->extra)) timer();
  chan<time_point> c = chan_access::adopt(s);
  const std::int64_t now = now_ns();
  if (ns == 0 && period == 0) {
    s->offer(from_ns(now));  // zero or negative: fires at once, no timer
    return c;
  }
  t->when = now + ns;
  t->period = period;
  t->fire = fire;
  t->dispose = &dispose;
  t->arg = s;
  s->retain();  // A1
  poller& pl = g_sched->poll;
  pl.timers_lock().lock();
  pl.add_timer_locked(t);
  pl.timers_lock().unlock();
  return c;
}

}  // namespace

chan<time_point> make_after(std::int64_t ns) {
  runtime_pin pin;
  if (!pin.ok()) throw_no_runtime("weft::after");
  return make_timer_chan(ns, 0, &fire_once);
}

chan<time_point> make_ticker(std::int64_t period_ns) {
  runtime_pin pin;
  if (!pin.ok()) throw_no_runtime("weft::ticker");
  return make_timer_chan(period_ns, period_ns, &fire_tick);
}

void stop_ticker(const chan<time_point>& c) noexcept {
  tstate* s = chan_access::state(c);
  if (s == nullptr) return;
  runtime_pin pin;
  if (!pin.ok()) return;  // see Design: nothing of a live runtime to touch
  auto* t = std::launder(reinterpret_cast<timer*>(s->extra));
  poller& pl = g_sched->poll;
  pl.timers_lock().lock();
  const bool was_queued = pl.cancel_timer_locked(t);
  pl.timers_lock().unlock();
  if (was_queued) s->release();  // A1
}

}  // namespace detail

void ticker::throw_bad_period() {
  throw std::invalid_argument("weft::ticker: the period must be positive");
}

}  // namespace weft
