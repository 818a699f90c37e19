// timer_chan.cpp: after() and ticker (weft/time.hpp): channels fed by
// runtime-owned timers on the poller's heap.
//
// Purpose
//   A channel of capacity 1 that receives the current time when a deadline
//   passes (after), or every period (ticker), sent without blocking: a full
//   channel drops the tick, as Go's sendTime does.
//
// Design
//   Each channel is one allocation; what feeds it lives in the channel's
//   `extra` room, in the cache line that also holds its reference count
//   (chan_core.hpp), so the poller touches one line per channel it fires.
//   * ticker: its own heap timer (re-armed by the poller before each
//     callback) until stop() cancels it under the timers lock or shutdown
//     disposes of it.
//   * after(d) with d below 64 us: its own one-shot heap timer.
//   * after(d) otherwise: joins a *batch*, one heap timer for every after()
//     that this thread made due within d/16 (at most 50 us) of each other.
//     The batch fires at its latest member's deadline, so no member fires
//     early and none more than d/16 (50 us) late; Go's timers are late by up
//     to a millisecond here. Joining is one CAS on the batch's member stack;
//     the timers lock is taken once per batch, and the poller wakes once per
//     batch. A select loop with a timeout makes an after() per iteration:
//     one heap timer each, taking the timers lock against the poller firing
//     the expired ones, and waking the poller every few microseconds, cost
//     more than the rest of the select together (200 ns per after(), and
//     the poller's wakeups took CPU from the workers; d/64 batches halved
//     it, d/16 ones cut it further: 250 -> 207 ns per select at 1 worker).
//     Rejected: per-processor timer heaps (the poller owns the only heap;
//     see poller.hpp), coalescing by rounding deadlines to a global grid
//     (all threads would contend for the same batch).
//   A heap reference keeps each channel alive while something queued may
//   still send to it. When the poller finds a channel whose only reference
//   is that one, no handle exists (handles come from handles): it frees the
//   channel without sending, and without a locked decrement.
//   stop() must only touch the poller of a runtime that is alive: it runs on
//   a runtime thread (a fiber, or run()'s thread unwinding fibers, both
//   before the poller is destroyed) or pins the runtime (runtime_pin).
//   Unpinnable means no runtime (the timer was disposed with its run) or a
//   runtime shutting down (dispose will drop the reference): nothing to do.
//
// Invariants
//   A1  A ticker's or single after's timer is in the heap iff its index !=
//       npos (timer_heap.hpp T1), and then the heap owns one reference to
//       its channel.
//   A2  A batch's member stack is `closed_mark` iff the batch fired or was
//       disposed; until then every member holds one reference owned by the
//       batch. Members join only by CAS on an open stack, and only with a
//       deadline in [batch deadline - granule, batch deadline].
//   A3  A batch is freed when both the heap (fire or dispose) and the
//       thread's cache (replacement or thread exit) let it go (its refs).
//
// Lock order: timers lock < channel lock (the callbacks send under the
//   timers lock; nothing takes the timers lock while holding a channel's).

#include <atomic>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "runtime/debug_internal.hpp"
#include "runtime/scheduler.hpp"
#include "weft/time.hpp"

namespace weft {
namespace detail {
namespace {

using time_point = std::chrono::steady_clock::time_point;
using tstate = chan_state<time_point>;

constexpr std::int64_t batch_min_ns = 64000;       // shorter after()s get their own timer
constexpr std::int64_t batch_max_granule = 50000;  // the most a batched after() fires late
constexpr std::int64_t batch_divisor = 16;         // ...and at most d / batch_divisor late

// timer_pin: keeps the running runtime (and its poller) alive for the
// scope, if there is one and it is not shutting down. On a runtime thread
// the runtime outlives the call anyway (and its poller outlives run()'s
// unwinding of fibers), so only other threads pay for a runtime_pin
// (two locked operations).
class timer_pin {
 public:
  timer_pin() noexcept {
    if (current_m() != nullptr) {
      ok_ = true;
    } else {
      pin_.emplace();
      ok_ = static_cast<bool>(*pin_);
    }
  }
  bool ok() const noexcept { return ok_; }

 private:
  std::optional<runtime_pin> pin_;
  bool ok_ = false;
};

time_point from_ns(std::int64_t ns) noexcept {
  return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::nanoseconds(ns)));
}

[[noreturn]] void throw_no_runtime(const char* api) {
  throw std::logic_error(std::string(api) +
                         ": no runtime is running, or it is shutting down (the timer needs the "
                         "runtime's poller; call it inside weft::run)");
}

void add_timer(timer* t) {
  poller& pl = g_sched->poll;
  pl.timers_lock().lock();
  pl.add_timer_locked(t);
  pl.timers_lock().unlock();
}

// deliver: the deadline of channel s passed; drop the queued reference.
void deliver(tstate* s, std::int64_t now) noexcept {
  // acquire: pairs with the release in the last handle's release(), so
  // freeing sees everything done through that handle.
  if (s->refs.load(std::memory_order_acquire) == 1) {
    s->destroy(s);  // no handle: nobody could receive it
    return;
  }
  s->offer(from_ns(now));
  s->release();
}

// ---- tickers and single after()s: a timer in the channel's extra room ----

timer* timer_of(tstate* s) noexcept { return std::launder(reinterpret_cast<timer*>(s->extra)); }

void fire_single(timer* t) { deliver(static_cast<tstate*>(t->arg), now_ns()); }  // A1; frees t
void fire_tick(timer* t) { static_cast<tstate*>(t->arg)->offer(from_ns(now_ns())); }
void dispose_single(timer* t) { static_cast<tstate*>(t->arg)->release(); }  // A1

void arm_single(tstate* s, std::int64_t when, std::int64_t period, void (*fire)(timer*)) {
  static_assert(sizeof(timer) <= chan_base::extra_size && alignof(timer) <= 8);
  auto* t = ::new (static_cast<void*>(s->extra)) timer();
  t->when = when;
  t->period = period;
  t->fire = fire;
  t->dispose = &dispose_single;
  t->arg = s;
  s->retain();  // A1
  add_timer(t);
}

// ---- batched after()s ----

// The link of a batch member, in its channel's extra room.
struct member_link {
  tstate* next;
};
member_link* link_of(tstate* s) noexcept {
  return std::launder(reinterpret_cast<member_link*>(s->extra));
}

tstate* const closed_mark = reinterpret_cast<tstate*>(alignof(tstate));

struct batch {
  timer tm;                               // in the heap until fired or disposed
  std::atomic<tstate*> members{nullptr};  // Treiber stack (A2)
  std::atomic<std::uint32_t> refs{2};     // the heap and the creating thread's cache (A3)
  std::int64_t deadline = 0;              // immutable: tm.when
};

void batch_release(batch* b) noexcept {
  // acq_rel: the last owner frees; it must see the other's accesses.
  if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    b->~batch();
    chan_free(b, alignof(batch));
  }
}

// close_batch: take the members and make the stack refuse new ones (A2).
tstate* close_batch(batch* b) noexcept {
  // acq_rel: acquire pairs with the joiners' release CAS (their links and
  // reference counts); release orders our reads before the closing.
  return b->members.exchange(closed_mark, std::memory_order_acq_rel);
}

void fire_batch(timer* t) {
  auto* b = static_cast<batch*>(t->arg);
  const std::int64_t now = now_ns();
  for (tstate* m = close_batch(b); m != nullptr;) {
    tstate* next = link_of(m)->next;  // m may be freed by deliver
    deliver(m, now);
    m = next;
  }
  batch_release(b);  // A3: the heap's part
}

void dispose_batch(timer* t) {
  auto* b = static_cast<batch*>(t->arg);
  for (tstate* m = close_batch(b); m != nullptr;) {
    tstate* next = link_of(m)->next;
    m->release();
    m = next;
  }
  batch_release(b);
}

// The calling thread's open batch. Reached only through local_batch(),
// which the compiler cannot fold across a fiber switch (DESIGN.md section
// 7); nothing in make_after switches.
struct batch_cache {
  batch* b = nullptr;
  ~batch_cache() {
    if (b != nullptr) batch_release(b);  // A3: the cache's part
  }
};
[[gnu::noinline]] batch_cache& local_batch() noexcept {
  static thread_local batch_cache cache;
  return cache;
}

// join: push s (its reference count already includes the batch's) onto b
// if b is open and due within `granule` after `when`.
bool join(batch* b, tstate* s, std::int64_t when, std::int64_t granule) noexcept {
  if (when > b->deadline || b->deadline - when > granule) return false;
  tstate* head = b->members.load(std::memory_order_relaxed);
  do {
    if (head == closed_mark) return false;
    link_of(s)->next = head;
    // release: pairs with the acquire in close_batch.
  } while (!b->members.compare_exchange_weak(head, s, std::memory_order_release,
                                             std::memory_order_relaxed));
  return true;
}

void arm_batched(tstate* s, std::int64_t when, std::int64_t granule) {
  ::new (static_cast<void*>(s->extra)) member_link{nullptr};
  s->refs.store(2, std::memory_order_relaxed);  // the handle and the batch; not yet shared
  batch_cache& cache = local_batch();
  if (cache.b != nullptr) {
    if (join(cache.b, s, when, granule)) return;
    batch_release(cache.b);
    cache.b = nullptr;
  }
  void* mem = chan_alloc(sizeof(batch), alignof(batch));
  batch* b = ::new (mem) batch();
  b->deadline = when + granule;
  b->members.store(s, std::memory_order_relaxed);
  b->tm.when = b->deadline;
  b->tm.fire = &fire_batch;
  b->tm.dispose = &dispose_batch;
  b->tm.arg = b;
  try {
    add_timer(&b->tm);  // publishes b (the timers lock orders the stores above)
  } catch (...) {
    b->~batch();
    chan_free(b, alignof(batch));
    s->refs.store(1, std::memory_order_relaxed);  // only the caller's handle
    throw;
  }
  cache.b = b;
}

}  // namespace

chan<time_point> make_after(std::int64_t ns) {
  timer_pin pin;
  if (!pin.ok()) throw_no_runtime("weft::after");
  tstate* s = tstate::create(1);
  chan<time_point> c = chan_access::adopt(s);
  const std::int64_t now = now_ns();
  if (ns == 0) {
    s->offer(from_ns(now));  // zero or negative: fires at once, no timer
  } else if (ns < batch_min_ns) {
    arm_single(s, now + ns, 0, &fire_single);
  } else {
    const std::int64_t granule =
        ns / batch_divisor < batch_max_granule ? ns / batch_divisor : batch_max_granule;
    arm_batched(s, now + ns, granule);
  }
  return c;
}

chan<time_point> make_ticker(std::int64_t period_ns) {
  timer_pin pin;
  if (!pin.ok()) throw_no_runtime("weft::ticker");
  tstate* s = tstate::create(1);
  chan<time_point> c = chan_access::adopt(s);
  arm_single(s, now_ns() + period_ns, period_ns, &fire_tick);
  return c;
}

void stop_ticker(const chan<time_point>& c) noexcept {
  tstate* s = chan_access::state(c);
  if (s == nullptr) return;
  timer_pin pin;
  if (!pin.ok()) return;  // see Design: nothing of a live runtime to touch
  poller& pl = g_sched->poll;
  pl.timers_lock().lock();
  const bool was_queued = pl.cancel_timer_locked(timer_of(s));
  pl.timers_lock().unlock();
  if (was_queued) s->release();  // A1
}

}  // namespace detail

void ticker::throw_bad_period() {
  throw std::invalid_argument("weft::ticker: the period must be positive");
}

}  // namespace weft
