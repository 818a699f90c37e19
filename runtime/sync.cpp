// sync.cpp: mutex, condition_variable, wait_group (weft/sync.hpp).
//
// Design
//   Each object keeps its waiters in a FIFO of sync_nodes that live on the
//   waiters' stacks, guarded by a spinlock the waiter hands to park() as its
//   release (the park protocol in weft/detail/park.hpp).
//   mutex: ownership is handed directly to the longest waiter (FIFO, no
//   barging while anyone waits), which is Go's "starvation mode" made
//   permanent: a fiber switch is cheap enough that fairness costs little.
//   condition_variable with a timeout: the notifier and the timer race for
//   the node's `outcome` word by CAS, so the timer callback never needs the
//   condition variable's lock (it runs under the timers lock, and the
//   waiter takes the cv lock before the timers lock: one order only).
//
// Invariants
//   Y1  mutex: has_waiters is set iff waiters_ is non-empty, both under lk_.
//   Y2  A node's `queued` flag is true iff it is in its object's list.
//   Y3  cv: a node is unparked by exactly the party that moved `outcome`
//       from 0.
//   Y4  Every wake goes through unlock_and_unpark, in chan_core.hpp C5's
//       order: a plain thread unparks before it releases the object's
//       lock. At shutdown the runtime unwinds a waiter whether or not a
//       waker claimed its node, and the waiter's unwind path takes the
//       lock before its frame (and node) goes; a plain thread that
//       unparked after unlocking could read the dead node and ready a
//       fiber record already recycled.
//
// Lock order: condition_variable::lk_ < timers lock < mutex::lk_.

#include "weft/sync.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>

#include "runtime/debug_internal.hpp"
#include "runtime/fiber.hpp"
#include "runtime/futex.hpp"
#include "runtime/sched_ops.hpp"
#include "runtime/timers.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"

namespace weft {
namespace detail {

void node_queue::push(sync_node* n) noexcept {
  WEFT_DCHECK(!n->queued, "sync.cpp Y2: a node is queued once");
  n->next = nullptr;
  n->queued = true;
  if (tail == nullptr) {
    head = n;
  } else {
    tail->next = n;
  }
  tail = n;
}

sync_node* node_queue::pop() noexcept {
  sync_node* n = head;
  if (n == nullptr) return nullptr;
  head = n->next;
  if (head == nullptr) tail = nullptr;
  n->next = nullptr;
  n->queued = false;
  return n;
}

void node_queue::remove(sync_node* n) noexcept {
  sync_node* prev = nullptr;
  for (sync_node* c = head; c != nullptr; prev = c, c = c->next) {
    if (c != n) continue;
    if (prev == nullptr) {
      head = c->next;
    } else {
      prev->next = c->next;
    }
    if (tail == c) tail = prev;
    n->next = nullptr;
    n->queued = false;
    return;
  }
  WEFT_DCHECK(false, "sync.cpp Y2: removing a node that is not in the list");
}

sync_node* node_queue::take_all() noexcept {
  sync_node* all = head;
  // A long list is the runtime's own work, as its wakes are: a million
  // nodes, each on its own stack page, took 300 ms on a loaded machine.
  wake_count count;
  for (sync_node* n = head; n != nullptr; n = n->next) {
    n->queued = false;
    count.woke();
  }
  head = tail = nullptr;
  return all;
}

namespace {

void unpark_all(sync_node* list) noexcept {
  // Each node may be gone as soon as it is unparked: read `next` first.
  wake_count count;
  while (list != nullptr) {
    sync_node* next = list->next;
    perturb(perturb_site::wake_gap);
    unpark(list->w);
    count.woke();
    list = next;
  }
}

}  // namespace

void unlock_and_unpark(spinlock& lk, sync_node* list) noexcept {
  if (on_runtime_thread()) {  // Y4
    lk.unlock();
    unpark_all(list);
  } else {  // a plain thread wakes under the lock (C5)
    unpark_all(list);
    lk.unlock();
  }
}

std::atomic<std::int64_t> g_mutex_waiters{0};

std::uint64_t mutex_owner(const void* m) noexcept {
  return static_cast<const mutex*>(m)->owner_.load(std::memory_order_relaxed);
}

std::int64_t steady_ns(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace detail

// ---- mutex ----

void mutex::lock_slow() {
  detail::sync_node n;
  n.w.prepare();
  lk_.lock();
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & locked) == 0) {
      // Free and, by Y1 and handoff, nobody queued: take it.
      if (state_.compare_exchange_weak(s, s | locked, std::memory_order_acquire)) {
        lk_.unlock();
        owner_.store(this_fiber_id(), std::memory_order_relaxed);
        return;
      }
      continue;
    }
    if ((s & has_waiters) != 0 ||
        state_.compare_exchange_weak(s, s | has_waiters, std::memory_order_relaxed)) {
      break;
    }
  }
  waiters_.push(&n);
  detail::g_mutex_waiters.fetch_add(1, std::memory_order_relaxed);
  struct count_down {
    ~count_down() { detail::g_mutex_waiters.fetch_sub(1, std::memory_order_relaxed); }
  } waiting;
  try {
    detail::park(n.w, lk_, detail::wait_reason::mutex, this);
  } catch (...) {
    // Unwound at shutdown while waiting: leave the queue, or, if the lock
    // was already handed to us, pass it on.
    lk_.lock();
    const bool still_queued = n.queued;
    if (still_queued) {
      waiters_.remove(&n);
      if (waiters_.empty()) state_.fetch_and(~has_waiters, std::memory_order_relaxed);
    }
    lk_.unlock();
    if (!still_queued) unlock();
    throw;
  }
  // Ownership was handed to us by unlock_slow (state stayed locked); the
  // unpark -> resume path carries its release to us.
}

void mutex::unlock_slow() {
  lk_.lock();
  const std::uint32_t s = state_.load(std::memory_order_relaxed);
  if ((s & locked) == 0) {
    lk_.unlock();
    std::fputs("weft: weft::mutex::unlock of an unlocked mutex\n", stderr);
    std::abort();
  }
  WEFT_DCHECK(((s & has_waiters) != 0) == !waiters_.empty(), "sync.cpp Y1");
  detail::sync_node* n = waiters_.pop();
  if (n == nullptr) {
    // has_waiters was stale (a waiter left while unwinding): plain unlock.
    state_.store(0, std::memory_order_release);
    lk_.unlock();
    return;
  }
  // Hand over: stay locked; clear has_waiters if that was the last (Y1).
  // release: the new owner's acquire fence pairs with it.
  owner_.store(n->w.fiber_ != nullptr ? n->w.fiber_->get_id() : 0, std::memory_order_relaxed);
  state_.store(waiters_.empty() ? locked : (locked | has_waiters), std::memory_order_release);
  detail::unlock_and_unpark(lk_, n);  // Y4
}

// ---- condition_variable ----

void condition_variable::notify_one() noexcept {
  detail::note_plain_call();
  lk_.lock();
  while (detail::sync_node* n = waiters_.pop()) {
    std::uint32_t expected = 0;
    if (n->outcome.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      detail::unlock_and_unpark(lk_, n);  // Y3, Y4
      return;
    }
    // Timed out already; its owner will find it unqueued.
  }
  lk_.unlock();
}

void condition_variable::notify_all() noexcept {
  detail::note_plain_call();
  lk_.lock();
  detail::sync_node* woken = waiters_.take_all();
  detail::sync_node** link = &woken;
  while (*link != nullptr) {
    std::uint32_t expected = 0;
    if ((*link)->outcome.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      link = &(*link)->next;
    } else {
      *link = (*link)->next;  // timed out already
    }
  }
  detail::unlock_and_unpark(lk_, woken);  // Y4
}

bool condition_variable::wait_impl(std::unique_lock<mutex>& lk, std::int64_t deadline) {
  if (deadline != INT64_MAX && deadline <= detail::now_ns()) return false;
  detail::sync_node n;
  n.w.prepare();
  const bool timed = deadline != INT64_MAX;
  detail::timer t;
  lk_.lock();
  waiters_.push(&n);
  lk.unlock();
  try {
    if (timed && n.w.fiber_ != nullptr) {
      t.when = deadline;
      t.arg = &n;
      t.fire = [](detail::timer* tm) {
        auto* node = static_cast<detail::sync_node*>(tm->arg);
        std::uint32_t expected = 0;
        if (node->outcome.compare_exchange_strong(expected, 2, std::memory_order_acq_rel)) {
          detail::unpark(node->w);  // Y3
        }
      };
      detail::g_timers.park_until(n.w, &t, detail::wait_reason::cond, this, lk_);
      if (n.outcome.load(std::memory_order_acquire) == 1) detail::g_timers.cancel(&t);
    } else if (timed) {
      // A plain thread (or a fiber inside blocking()): sleep on a futex
      // with a timeout instead of a runtime timer.
      lk_.unlock();
      for (;;) {
        if (n.w.woken_.load(std::memory_order_acquire) != 0) break;
        const std::int64_t left = deadline - detail::now_ns();
        if (left <= 0) {
          std::uint32_t expected = 0;
          if (n.outcome.compare_exchange_strong(expected, 2, std::memory_order_acq_rel)) break;
          continue;  // notified concurrently: its unpark is on the way
        }
        timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
        detail::futex_wait(n.w.woken_, 0, &ts);
      }
    } else {
      detail::park(n.w, lk_, detail::wait_reason::cond, this);
    }
  } catch (...) {
    // Unwound at shutdown: leave both queues (park_until left the timers');
    // do not take the user's mutex
    // back (it may never be free again), and make `lk` forget it owns it.
    lk_.lock();
    if (n.queued) waiters_.remove(&n);
    lk_.unlock();
    lk.release();
    throw;
  }
  if (n.outcome.load(std::memory_order_acquire) == 2) {
    lk_.lock();
    if (n.queued) waiters_.remove(&n);
    lk_.unlock();
  }
  lk.lock();
  return n.outcome.load(std::memory_order_relaxed) == 1;
}

// ---- wait_group ----

void wait_group::add(int n) {
  detail::note_plain_call();
  const std::uint64_t delta = static_cast<std::uint64_t>(static_cast<std::int64_t>(n)) << 32;
  const std::uint64_t s = state_.fetch_add(delta, std::memory_order_acq_rel) + delta;
  const auto counter = static_cast<std::int32_t>(s >> 32);
  const auto waiters = static_cast<std::uint32_t>(s);
  if (counter < 0) {
    state_.fetch_sub(delta, std::memory_order_acq_rel);
    throw std::logic_error("weft::wait_group: negative counter (done() called more than add())");
  }
  if (counter > 0 || waiters == 0) return;
  // The counter reached zero with waiters queued: release them all.
  lk_.lock();
  std::uint64_t count = 0;
  for (detail::sync_node* w = waiters_.head; w != nullptr; w = w->next) ++count;
  detail::sync_node* woken = waiters_.take_all();
  state_.fetch_sub(count, std::memory_order_acq_rel);  // the waiter count only
  detail::unlock_and_unpark(lk_, woken);               // Y4
}

void wait_group::wait() {
  detail::note_plain_call();
  if ((state_.load(std::memory_order_acquire) >> 32) == 0) return;
  detail::sync_node n;
  n.w.prepare();
  lk_.lock();
  std::uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if ((s >> 32) == 0) {
      lk_.unlock();
      return;
    }
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) break;
  }
  waiters_.push(&n);
  try {
    detail::park(n.w, lk_, detail::wait_reason::wait_group, this);
  } catch (...) {
    lk_.lock();
    if (n.queued) {
      waiters_.remove(&n);
      state_.fetch_sub(1, std::memory_order_acq_rel);
    }
    lk_.unlock();
    throw;
  }
}

}  // namespace weft
