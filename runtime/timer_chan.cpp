// timer_chan.cpp: after() and ticker (weft/time.hpp): channels fed by
// runtime-owned timers in the timer service (timers.hpp).
//
// Purpose
//   A channel of capacity 1 that receives the current time when a deadline
//   passes (after), or every period (ticker), sent without blocking: a full
//   channel drops the tick, as Go's sendTime does.
//
// Design
//   Each channel is one allocation; what feeds it lives in the channel's
//   `extra` room, in the cache line that also holds its reference count
//   (chan_core.hpp), so firing touches one line per channel.
//   * ticker: its own heap timer (re-armed by the service before each
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
//     Rejected: per-processor timer heaps (one heap serves all;
//     see timers.hpp), coalescing by rounding deadlines to a global grid
//     (all threads would contend for the same batch).
//   The hold. A runtime timer that may still send to a channel holds it:
//   one reference of weight chan_base::timer_hold in its count, beside one
//   per handle. Firing sends and then drops the hold; a channel a firing
//   finds with no handle left is freed without sending.
//   Abandoned timers (Go 1.23's rule). When the last handle to a channel
//   goes while its timer still holds it, nobody can ever receive from it:
//   the channel's destroy, called by that handle's release with its
//   reference still counted, takes the timer back and frees the channel at
//   once instead of at the deadline. A single's or ticker's timer is
//   cancelled under the timers lock; a batch member is unlinked from its
//   batch under the batch's lock (B3-B5), and a batch left empty that no
//   thread can join any more is cancelled (B6). (One million selects that
//   gave up on after(1h) held 194 MB until their deadlines before this.)
//   The thread's open batch stays queued while it is empty, since a select
//   loop empties and refills it every iteration; an empty batch reaches
//   nobody, so timers_live() and the deadlock check skip it (timer_idle).
//   Rejected: keeping a timer channel off the heap until someone waits on
//   it (Go 1.23): a pending after() with a handle must keep counting as a
//   pending timer for deadlock detection, received or not.
//   stop(), and taking an abandoned timer back, must only touch the timers
//   of a runtime that is alive: they run on a runtime thread (a fiber, or
//   run()'s thread unwinding fibers, both before the run clears them)
//   or pin the runtime (runtime_pin). Unpinnable means no runtime (the
//   timer was disposed with its run) or a runtime shutting down (dispose
//   will drop the hold): nothing to do.
//
// Invariants
//   A1  A ticker's or single after's timer is in the heap iff its index !=
//       npos (timers.hpp T1), and then its channel's count includes
//       the hold.
//   A2  A batch is freed when the heap (fire, dispose or cancel), the
//       thread's cache (replacement or thread exit) and whoever is
//       cancelling it have all let it go (its refs).
//   A3  A hold is dropped exactly once: after firing or disposing (the
//       timer service), by stop(), or by the last handle taking the timer back
//       (then the channel is freed at once). refs == timer_hold: the hold
//       is all that is left.
//
// The batch protocol (cited as Bn)
//   B1  A batch's member stack is `closed_mark` iff the batch fired, was
//       disposed or was cancelled. Closing is one exchange under the
//       batch's lock, by whoever holds the heap's part (fire_batch,
//       dispose_batch, finish_cancel), which thereby takes the whole list;
//       the stack is never reopened.
//   B2  Only the thread whose cache holds a batch adds members to it: the
//       first when it creates the batch (before g_timers.add publishes it), the
//       others by one release CAS each on the open stack (join), with a
//       deadline in [batch deadline - granule, batch deadline].
//   B3  A channel's link belongs to its batch once it is a member: `next`
//       is the member below it (nullptr for the bottom one), `owner` the
//       batch. The joiner writes the link before the CAS that makes it a
//       member (or before the new batch is published); after that, `next`
//       changes only under the batch's lock, when the member below is
//       unlinked. A join that fails (the batch closed under it) may leave a
//       link pointing into another batch's list: whoever makes the channel
//       a member again, as the first of a new batch, rewrites the whole
//       link.
//   B4  Every member on the stack has its hold owned by the batch. The
//       heap's side walks the list it took (B1) once, reading each link
//       before the member may be freed, and drops each hold (after sending,
//       when firing); a member's abandoning handle that unlinks it under
//       the batch's lock takes its hold instead.
//   B5  The heap's side clears a member's `owner`, under that channel's
//       lock, before it lets the member go. So a handle that finds `owner`
//       set while it holds the channel lock may lock that batch: the batch
//       outlives the heap's walk over the members it took.
//   B6  A batch is idle when its stack is empty (open, no member). An idle
//       batch that no cache holds (`cached`, guarded by the batch's lock)
//       is cancelled: by the abandoning handle that emptied it, or by the
//       cache letting go of it, whichever comes last.
//
// Lock order: timers lock < channel lock < batch lock (the callbacks send
//   under the timers lock, and close a batch under it; an abandoning handle
//   locks its channel, then the batch; nothing takes the timers lock while
//   holding a channel's or a batch's).

#include <atomic>
#include <new>
#include <stdexcept>
#include <string>

#include "runtime/debug_internal.hpp"
#include "runtime/machine.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/timers.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/introspect.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/time.hpp"

namespace weft {
namespace detail {
namespace {

using time_point = std::chrono::steady_clock::time_point;
using tstate = chan_state<time_point>;

constexpr std::int64_t batch_min_ns = 64000;       // shorter after()s get their own timer
constexpr std::int64_t batch_max_granule = 50000;  // the most a batched after() fires late
constexpr std::int64_t batch_divisor = 16;         // ...and at most d / batch_divisor late

time_point from_ns(std::int64_t ns) noexcept {
  return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::nanoseconds(ns)));
}

[[noreturn]] void throw_no_runtime(const char* api) {
  throw std::logic_error(std::string(api) +
                         ": no runtime is running, or it is shutting down (the timer needs the "
                         "runtime's poller; call it inside weft::run)");
}

constexpr std::size_t hold = chan_base::timer_hold;

// free_chan: free a channel nothing refers to any more.
void free_chan(tstate* s) noexcept { tstate::destroy_fn(s); }

// drop_hold: the timer lets its channel go (A3).
void drop_hold(tstate* s) noexcept {
  // acq_rel: the last owner frees; it must see the other owners' accesses.
  if (s->refs.fetch_sub(hold, std::memory_order_acq_rel) == hold) free_chan(s);
}

// drop_handle: the last handle lets its channel go after all, the timer
// having fired (or being disposed) before it could be taken back.
void drop_handle(tstate* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_chan(s);
}

// no_handle: only the hold is left (A3), so nobody can receive from s.
bool no_handle(tstate* s) noexcept {
  // acquire: pairs with the release in the last handle's release(), so
  // freeing sees everything done through that handle.
  return s->refs.load(std::memory_order_acquire) == hold;
}

// deliver: the deadline of channel s passed: send the time, drop the hold.
void deliver(tstate* s, std::int64_t now) noexcept {
  if (no_handle(s)) {
    free_chan(s);
    return;
  }
  s->offer(from_ns(now));
  drop_hold(s);
}

// cancel_queued: take t off the heap if it is still there, under the
// timers lock of a runtime that is alive (see Design). Returns whether it
// was: then its hold (or the heap's part of a batch) is the caller's.
bool cancel_queued(timer* t) noexcept {
  timer_pin pin;
  if (!pin.ok()) return false;
  return g_timers.cancel(t);
}

// ---- tickers and single after()s: a timer in the channel's extra room ----

timer* timer_of(tstate* s) noexcept { return std::launder(reinterpret_cast<timer*>(s->extra)); }

void fire_single(timer* t) { deliver(static_cast<tstate*>(t->arg), now_ns()); }  // A1; frees t
void fire_tick(timer* t) { static_cast<tstate*>(t->arg)->offer(from_ns(now_ns())); }
void dispose_single(timer* t) { drop_hold(static_cast<tstate*>(t->arg)); }  // A1

// destroy_single: the destroy of a single's or ticker's channel
// (chan_core.hpp): free it, or, for its last handle while the timer still
// holds it, take the timer back and free it (A3).
void destroy_single(chan_base* c) noexcept {
  auto* s = static_cast<tstate*>(c);
  if (s->refs.load(std::memory_order_relaxed) != 0 && !cancel_queued(timer_of(s))) {
    drop_handle(s);  // fired meanwhile, or left to dispose
    return;
  }
  free_chan(s);  // nothing left, or only the hold we took back and our handle
}

void arm_single(tstate* s, std::int64_t when, std::int64_t period, void (*fire)(timer*)) {
  static_assert(sizeof(timer) <= chan_base::extra_size && alignof(timer) <= 8);
  auto* t = ::new (static_cast<void*>(s->extra)) timer();
  t->when = when;
  t->period = period;
  t->fire = fire;
  t->dispose = &dispose_single;
  t->arg = s;
  s->destroy = &destroy_single;
  s->refs.store(1 + hold,
                std::memory_order_relaxed);  // the handle and the hold (A1); not yet shared
  try {
    g_timers.add(t);
  } catch (...) {
    s->refs.store(1, std::memory_order_relaxed);  // only the caller's handle
    throw;
  }
}

// ---- batched after()s ----

struct batch;

// The link of a batch member, in its channel's extra room (B3).
struct member_link {
  tstate* next;
  batch* owner;
};
member_link* link_of(tstate* s) noexcept {
  return std::launder(reinterpret_cast<member_link*>(s->extra));
}

tstate* const closed_mark = reinterpret_cast<tstate*>(alignof(tstate));

struct batch {
  timer tm;                                  // in the heap until fired, disposed or cancelled
  std::atomic<tstate*> members{nullptr};     // Treiber stack (B1-B3)
  std::atomic<std::uint32_t> refs{2};        // the heap and the creating thread's cache (A2)
  spinlock lock;                             // closing (B1), unlinking (B3), `cached` (B6)
  bool cached WEFT_GUARDED_BY(lock) = true;  // B6
  std::int64_t deadline = 0;                 // immutable: tm.when
};

void batch_release(batch* b) noexcept {
  // acq_rel: the last owner frees; it must see the others' accesses.
  if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    b->~batch();
    chan_free(b, alignof(batch));
  }
}

// close_batch: take the members and make the stack refuse new ones (B1).
tstate* close_batch(batch* b) noexcept {
  b->lock.lock();
  // acq_rel: acquire pairs with the joiners' release CAS (their links and
  // reference counts); release orders our reads before the closing.
  tstate* list = b->members.exchange(closed_mark, std::memory_order_acq_rel);
  b->lock.unlock();
  return list;
}

// next_member: the member below m in b's list (B3, B4): read before m may
// be freed.
tstate* next_member(batch* b, tstate* m) noexcept {
  const member_link* l = link_of(m);
  WEFT_DCHECK(l->owner == b, "B3: a batch's list reaches a channel of another batch");
  (void)b;
  return l->next;
}

// let_go: the heap's side is done with member m (B4, B5): send it the time
// if `now` >= 0, and drop its hold.
void let_go(tstate* m, std::int64_t now) noexcept {
  if (no_handle(m)) {
    free_chan(m);  // and no handle can look at `owner` any more
    return;
  }
  chan_lock(m->lock);
  link_of(m)->owner = nullptr;  // B5
  m->lock.unlock();
  if (now >= 0) m->offer(from_ns(now));
  drop_hold(m);
}

void fire_batch(timer* t) {
  auto* b = static_cast<batch*>(t->arg);
  const std::int64_t now = now_ns();
  for (tstate* m = close_batch(b); m != nullptr;) {
    tstate* next = next_member(b, m);  // m may be freed by let_go
    let_go(m, now);
    m = next;
  }
  batch_release(b);  // A2: the heap's part
}

void dispose_batch(timer* t) {
  auto* b = static_cast<batch*>(t->arg);
  for (tstate* m = close_batch(b); m != nullptr;) {
    tstate* next = next_member(b, m);
    let_go(m, -1);
    m = next;
  }
  batch_release(b);
}

// finish_cancel: `cancelled`: b came off the heap, so close it (it has no
// member, B6) and drop the heap's part; then drop the caller's reference.
void finish_cancel(batch* b, bool cancelled) noexcept {
  if (cancelled) {
    [[maybe_unused]] tstate* left = close_batch(b);
    WEFT_DCHECK(left == nullptr, "B6: a batch cancelled as idle had members");
    batch_release(b);
  }
  batch_release(b);
}

// cancel_batch: b is idle and no cache holds it (B6); the caller owns one
// of its references, which this drops.
void cancel_batch(batch* b) noexcept { finish_cancel(b, cancel_queued(&b->tm)); }

// uncache: the thread's cache lets b go (A2), cancelling it if idle (B6).
void uncache(batch* b) noexcept {
  b->lock.lock();
  b->cached = false;
  const bool idle = b->members.load(std::memory_order_relaxed) == nullptr;
  b->lock.unlock();
  if (idle) {
    cancel_batch(b);  // with the cache's reference
  } else {
    batch_release(b);
  }
}

// unlink: take member s off b's open stack; the caller holds b->lock (B3).
void unlink(batch* b, tstate* s) noexcept {
  tstate* below = link_of(s)->next;
  tstate* head = s;
  // acq_rel: as a joiner's CAS. On failure, acquire: a joiner pushed above
  // s, and we walk the links it published.
  if (b->members.compare_exchange_strong(head, below, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
    return;
  }
  for (tstate* m = head;;) {
    WEFT_DCHECK(m != nullptr && m != closed_mark, "B3: a member is missing from its batch");
    member_link* l = link_of(m);
    if (l->next == s) {
      l->next = below;
      return;
    }
    m = l->next;
  }
}

// destroy_member: the destroy of a batch member's channel (chan_core.hpp):
// free it, or, for its last handle while its batch still holds it, take it
// off the batch and free it (A3, B4-B6).
void destroy_member(chan_base* c) noexcept {
  auto* s = static_cast<tstate*>(c);
  if (s->refs.load(std::memory_order_relaxed) == 0) {
    free_chan(s);
    return;
  }
  bool took = false;
  batch* cancel = nullptr;
  chan_lock(s->lock);  // B5
  if (batch* b = link_of(s)->owner) {
    b->lock.lock();
    if (b->members.load(std::memory_order_relaxed) != closed_mark) {
      unlink(b, s);
      took = true;
      if (!b->cached && b->members.load(std::memory_order_relaxed) == nullptr) {
        b->refs.fetch_add(1, std::memory_order_relaxed);  // for cancel_batch, below (A2)
        cancel = b;
      }
    }
    b->lock.unlock();
  }
  s->lock.unlock();
  if (took) {
    WEFT_DCHECK(s->refs.load(std::memory_order_relaxed) == hold + 1,
                "A3: a member taken off its batch has another owner");
    free_chan(s);
  } else {
    drop_handle(s);  // the batch fired (or is being disposed): the heap's side drops the hold
  }
  if (cancel != nullptr) cancel_batch(cancel);
}

// The calling thread's open batch. Reached only through local_batch(),
// which the compiler cannot fold across a fiber switch (machine.hpp,
// "Thread-locals and migration"); nothing in make_after switches.
struct batch_cache {
  batch* b = nullptr;
  ~batch_cache() {
    if (b != nullptr) uncache(b);  // A2: the cache's part
  }
};
[[gnu::noinline]] batch_cache& local_batch() noexcept {
  static thread_local batch_cache cache;
  return cache;
}

// A test hook in every build (introspect.hpp), so the race it opens is
// tested in release too; one relaxed load on the batched path.
std::atomic<void (*)()> g_join_hook{nullptr};  // relaxed: tests set it before the calls it affects

// join: push s (its reference count already includes the batch's hold)
// onto b if b is open and due within `granule` after `when` (B2). On
// failure s's link may point into b's list (B3).
bool join(batch* b, tstate* s, std::int64_t when, std::int64_t granule) noexcept {
  if (when > b->deadline || b->deadline - when > granule) return false;
  member_link* l = link_of(s);
  l->owner = b;
  tstate* head = b->members.load(std::memory_order_relaxed);
  do {
    if (head == closed_mark) return false;
    l->next = head;
    perturb(perturb_site::timer_add);  // the poller may fire (close) the batch meanwhile
    if (void (*hook)() = g_join_hook.load(std::memory_order_relaxed)) hook();
    // release: pairs with the acquire in close_batch and unlink (B4 reads
    // the link).
  } while (!b->members.compare_exchange_weak(head, s, std::memory_order_release,
                                             std::memory_order_relaxed));
  return true;
}

void arm_batched(tstate* s, std::int64_t when, std::int64_t granule) {
  member_link* l = ::new (static_cast<void*>(s->extra)) member_link{nullptr, nullptr};
  s->destroy = &destroy_member;
  s->refs.store(1 + hold,
                std::memory_order_relaxed);  // the handle and the hold (B4); not yet shared
  batch_cache& cache = local_batch();
  if (cache.b != nullptr) {
    if (join(cache.b, s, when, granule)) return;
    batch* old = cache.b;
    cache.b = nullptr;
    uncache(old);
  }
  batch* b = nullptr;
  try {
    b = ::new (chan_alloc(sizeof(batch), alignof(batch))) batch();
    b->deadline = when + granule;
    *l = member_link{nullptr, b};  // B3: a failed join may have left a link into a closed batch
    b->members.store(s, std::memory_order_relaxed);
    b->tm.when = b->deadline;
    b->tm.fire = &fire_batch;
    b->tm.dispose = &dispose_batch;
    b->tm.arg = b;
    g_timers.add(&b->tm);  // publishes b (the timers lock orders the stores above)
  } catch (...) {
    if (b != nullptr) {
      b->~batch();
      chan_free(b, alignof(batch));
    }
    *l = member_link{nullptr, nullptr};
    s->refs.store(1, std::memory_order_relaxed);  // only the caller's handle
    throw;
  }
  cache.b = b;
}

}  // namespace

void set_batch_join_hook(void (*hook)()) noexcept {
  g_join_hook.store(hook, std::memory_order_relaxed);
}

chan<time_point> make_after(std::int64_t ns) {
  timer_pin pin;
  if (!pin.ok()) throw_no_runtime("weft::after");
  tstate* s = tstate::create(1);
  chan<time_point> c = chan_access::adopt(s);
  const std::int64_t now = now_ns();
  perturb(perturb_site::timer_add);  // a deadline computed, then the thread stalls
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
  if (!pin.ok()) return;                           // see Design: nothing of a live runtime to touch
  if (g_timers.cancel(timer_of(s))) drop_hold(s);  // A1, A3
}

bool timer_idle(const timer* t) noexcept {
  if (t->fire != &fire_batch) return false;
  // relaxed: a count, and the caller's timers lock keeps the batch alive.
  return static_cast<const batch*>(t->arg)->members.load(std::memory_order_relaxed) == nullptr;
}

std::size_t timers_live() noexcept {
  timer_pin pin;
  return pin.ok() ? g_timers.live(SIZE_MAX, false) : 0;
}

}  // namespace detail

void ticker::throw_bad_period() {
  throw std::invalid_argument("weft::ticker: the period must be positive");
}

}  // namespace weft
