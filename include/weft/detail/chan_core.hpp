#pragma once
// detail/chan_core.hpp: the type-independent half of a channel: its lock,
// reference count, closed flag, buffer bookkeeping and the two FIFO queues
// of blocked parties. chan.hpp adds the typed ring buffer and the value
// transfers; select.hpp drives several channels at once.
//
// Design (Go's chan.go, with the lock handed to park as in sync.cpp)
//   A blocked party publishes a chan_node (Go's sudog) that lives on its own
//   stack in the channel's send or receive queue, under the channel lock,
//   and parks with that lock's unlock as its release (detail/park.hpp). A
//   party that finds a node waiting does the whole transfer itself, under
//   the lock: it moves the value straight into the receiver's slot (or out
//   of the sender's), unlinks the node and unparks its owner. So every
//   channel operation takes the channel lock exactly once, and the woken
//   party never takes it again on its normal path.
//   A select publishes one node per case, all pointing at one `done` word;
//   the party that moves `done` from 0 by CAS owns the select (claim());
//   others unlink that node and look further.
//   Rejected: lock-free queues (a select must enqueue on several channels
//   atomically with respect to each one; Go, Rust's crossbeam and
//   Boost.Fiber all lock for the waiter queues), a mutex (the lock is
//   released on the far side of a context switch, see spinlock.hpp).
//
// Invariants (cited as Cn)
//   C1  At least one of sendq and recvq is empty, except that one select may
//       wait on both queues of a channel (a send case and a receive case on
//       the same channel), as in Go.
//   C2  count > 0 implies recvq holds no live (unclaimed) node.
//   C3  count < cap implies sendq holds no live node.
//   C4  node.queued is true iff the node is linked in its channel's queue;
//       both change only under that channel's lock.
//   C5  A waker running on one of the runtime's threads unparks after it
//       released the channel lock, as Go does (the wakeup may enter the
//       kernel to start a worker; the lock must not be held across that).
//       A waker on any other thread unparks a fiber node while it still
//       holds the lock: at shutdown the runtime resumes parked fibers to
//       unwind them whether or not a waker claimed them, and an unwinding
//       fiber takes the lock before its frame goes, so a foreign waker must
//       be done with the node by then. A runtime-thread waker cannot race
//       with that: unwinding starts only once no worker runs a fiber, and
//       the thread that unwinds runs one fiber at a time. A parked OS
//       thread is never unwound; its node stays valid until it is woken.
//       Every other lock a waiter parks under follows the same rule
//       (weft::mutex, condition_variable, wait_group, descriptor locks:
//       unlock_and_unpark, sync.cpp Y4).
//   C6  A claimed node is never linked again; `closed` and the slot are
//       written by the claimer before the unpark.
//
// Lock order: timers lock < channel locks (in address order) <
//   scheduler locks (ready/wakep may take scheduler::mu or the global queue).

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "weft/detail/check.hpp"
#include "weft/detail/park.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/detail/spinlock.hpp"

namespace weft::detail {

// chan_node: one blocked party on one channel (Go's sudog).
struct chan_node {
  // Queue links and membership: guarded by the channel lock (C4).
  chan_node* next = nullptr;
  chan_node* prev = nullptr;
  bool queued = false;
  // Written by the claimer under the lock before the unpark (C6); read by
  // the owner after park returns.
  bool closed = false;
  // Set by the owner before the node is published, then read-only.
  std::uint32_t case_id = 0;                  // select: index + 1 (the value CASed into *sel)
  waiter* w = nullptr;                        // the party to unpark
  void* slot = nullptr;                       // receive: std::optional<stored>*; send: stored*
  std::atomic<std::uint32_t>* sel = nullptr;  // select: its `done` word; null for send/recv
};

// node_fifo: an intrusive doubly linked FIFO of chan_nodes, guarded by the
// channel lock. head_ is atomic only so select can peek at it without the
// lock (a hint, see chan_base::recv_ready); written under the lock.
class node_fifo {
 public:
  bool empty() const noexcept { return head_.load(std::memory_order_relaxed) == nullptr; }
  bool looks_nonempty() const noexcept {
    return head_.load(std::memory_order_acquire) != nullptr;  // hint; ordered before the next load
  }

  void push(chan_node* n) noexcept {
    WEFT_DCHECK(!n->queued, "chan_core C4/C6: a node is linked once");
    WEFT_DCHECK(n->sel == nullptr || n->sel->load(std::memory_order_relaxed) == 0,
                "chan_core C6: a claimed select node is never linked again");
    n->next = nullptr;
    n->prev = tail_;
    n->queued = true;
    if (tail_ == nullptr) {
      head_.store(n, std::memory_order_relaxed);
    } else {
      tail_->next = n;
    }
    tail_ = n;
  }

  chan_node* pop() noexcept {
    chan_node* n = head_.load(std::memory_order_relaxed);
    if (n == nullptr) return nullptr;
    chan_node* next = n->next;
    head_.store(next, std::memory_order_relaxed);
    if (next == nullptr) {
      tail_ = nullptr;
    } else {
      next->prev = nullptr;
    }
    n->next = nullptr;
    n->queued = false;
    return n;
  }

  // remove: n must be queued here (C4).
  void remove(chan_node* n) noexcept {
    WEFT_DCHECK(n->queued, "chan_core C4: removing a node that is not queued");
    unlink(n);
  }

  // length_locked: nodes queued (for tests; walks the list).
  std::size_t length_locked() const noexcept {
    std::size_t k = 0;
    for (chan_node* n = head_.load(std::memory_order_relaxed); n != nullptr; n = n->next) ++k;
    return k;
  }

 private:
  void unlink(chan_node* n) noexcept {
    if (n->prev == nullptr) {
      head_.store(n->next, std::memory_order_relaxed);
    } else {
      n->prev->next = n->next;
    }
    if (n->next == nullptr) {
      tail_ = n->prev;
    } else {
      n->next->prev = n->prev;
    }
    n->next = n->prev = nullptr;
    n->queued = false;
  }

  std::atomic<chan_node*> head_{nullptr};
  chan_node* tail_ = nullptr;
};

// lock_contended: the channel lock's slow path (chan.cpp).
void lock_contended(spinlock& lk) noexcept WEFT_ACQUIRE(lk);

// chan_lock: take a channel's lock. Uncontended, one exchange, as
// spinlock::lock. Contended, it backs off exponentially instead of
// polling: with fibers on two cores hammering one channel, polling hands the
// lock's cache line back and forth on every operation (measured: 150 ns per
// value through a buffered channel, against 16.5 ns on one core), while a
// waiter that keeps off the line lets the holder's core run a burst of
// operations. Go's runtime lock gets the same effect by sleeping.
inline void chan_lock(spinlock& lk) noexcept WEFT_ACQUIRE(lk) {
  if (!lk.try_lock_once()) lock_contended(lk);
}

// claim: pop the first node of q whose owner is still waiting. A plain node
// is always live; a select node is live only if this CAS wins its `done`
// word (C6). Nodes of selects already won elsewhere are dropped, unlinked
// (their owners find them unqueued). Caller holds the channel lock.
inline chan_node* claim(node_fifo& q) noexcept {
  while (chan_node* n = q.pop()) {
    if (n->sel == nullptr) return n;
    std::uint32_t expected = 0;
    // acq_rel: the CAS arbitrates between wakers holding different channel
    // locks; the owner learns the outcome through its unpark (which orders
    // everything the winner wrote), so no other pairing is needed.
    if (n->sel->compare_exchange_strong(expected, n->case_id, std::memory_order_acq_rel)) return n;
  }
  return nullptr;
}

// unlock_and_wake: release `lk` and unpark the owner of a node claimed under
// it, in the order C5 prescribes; with no node (null), just release `lk`.
// n may be gone once this returns.
inline void unlock_and_wake(spinlock& lk, chan_node* n) noexcept WEFT_RELEASE(lk) {
  WEFT_DCHECK(lk.is_locked(), "chan_core C5: unlock_and_wake without the lock");
  if (n == nullptr) {
    lk.unlock();
    return;
  }
  WEFT_DCHECK(!n->queued, "chan_core C4: a claimed node is unlinked");
  waiter* w = n->w;
  if (w->fiber_ != nullptr && !on_runtime_thread()) {
    unpark(*w);
    perturb(perturb_site::wake_gap);
    lk.unlock();
  } else {
    lk.unlock();
    perturb(perturb_site::wake_gap);
    unpark(*w);
  }
}

// wake_list: nodes claimed under a lock (close() claims many), woken per C5:
// add_locked() unparks a fiber node at once when the caller is a foreign
// thread, and otherwise keeps the node for wake_unlocked(), which the caller
// calls once it released the lock.
class wake_list {
 public:
  void add_locked(chan_node* n) noexcept {
    if (n->w->fiber_ != nullptr && !runtime_thread_) {
      unpark(*n->w);
    } else {
      n->next = later_;
      later_ = n;
    }
  }
  void wake_unlocked() noexcept {
    wake_count count;
    for (chan_node* n = later_; n != nullptr;) {
      chan_node* next = n->next;  // n may be gone once its owner runs
      perturb(perturb_site::wake_gap);
      unpark(*n->w);
      count.woke();
      n = next;
    }
    later_ = nullptr;
  }

 private:
  chan_node* later_ = nullptr;
  bool runtime_thread_ = on_runtime_thread();
};

// Results of an operation attempted under the lock.
enum class op_result : std::uint8_t { blocked, done, closed };

// chan_base: the shared state of one channel, minus the typed buffer.
struct alignas(64) chan_base {
  // First cache line: everything a send or receive touches, so that one
  // operation moves one line between cores.
  spinlock lock;
  // Set once, under `lock`; read without it only as a hint (see the
  // readiness hints below).
  std::atomic<bool> closed{false};
  // Buffered values. Written under `lock`; read without it by size() and
  // select's readiness hints (relaxed: a hint, or the caller holds the lock).
  std::atomic<std::size_t> count{0};
  std::size_t head WEFT_GUARDED_BY(lock) = 0;  // ring index of the oldest value
  std::size_t cap = 0;                         // immutable
  node_fifo sendq WEFT_GUARDED_BY(lock);       // C1, C3
  node_fifo recvq WEFT_GUARDED_BY(lock);       // C1, C2

  // Second line: written only when handles are copied or dropped, and
  // room for the runtime timer that feeds an after() or ticker channel, so
  // the poller firing it finds the timer and the count in one line.
  // Handles referring to this channel, plus timer_hold while a runtime
  // timer may still send to it (timer_chan.cpp). The last release destroys
  // it through `destroy`.
  alignas(64) std::atomic<std::size_t> refs{1};
  // destroy: called by the release that drops the last reference (refs ==
  // 0) to free the channel; for a channel a timer holds, also by the
  // release of its last handle while the timer still holds it (refs ==
  // timer_hold + 1, that handle's reference still counted), so that
  // timer_chan.cpp takes the timer back at once. Set before the channel is
  // shared; immutable then.
  void (*destroy)(chan_base*) noexcept = nullptr;
  static constexpr std::size_t timer_hold = std::size_t{1} << 40;
  static constexpr std::size_t extra_size = 48;
  // Owned by whoever made the channel with a timer (timer_chan.cpp);
  // trivially destructible contents only.
  alignas(8) unsigned char extra[extra_size];

  void retain() noexcept {
    refs.fetch_add(1, std::memory_order_relaxed);  // a new handle comes from an existing one
  }
  void release() noexcept {
    // relaxed: only picks the path; release_held decides on acquired values.
    const std::size_t r = refs.load(std::memory_order_relaxed);
    if (r > timer_hold) {
      release_held(r);
      return;
    }
    // acq_rel: the last owner's destroy must see every other owner's writes.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(this);
  }
  // release_held: release() of a handle while a timer holds the channel
  // (chan.cpp); `r` is the count last seen.
  void release_held(std::size_t r) noexcept;

  // Readiness hints for select, read without the lock. Each may be stale;
  // a "ready" answer is verified under the lock. A "not ready" answer is a
  // linearizable observation (Go's chan.go argument): the emptiness load is
  // ordered before the closed load, and a channel never stops being closed.
  // Not analysed (thread_safety.hpp): the queues' looks_nonempty is the
  // lock-free read of an atomic, made without the lock on purpose.
  bool recv_ready_hint() const noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
    if (count.load(std::memory_order_acquire) != 0 || sendq.looks_nonempty()) return true;
    return closed.load(std::memory_order_relaxed);
  }
  bool send_ready_hint() const noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
    if (closed.load(std::memory_order_acquire)) return true;
    return recvq.looks_nonempty() || count.load(std::memory_order_relaxed) < cap;
  }
};

// park_forever: block the calling party for good (a nil channel, an empty
// select). Throws fiber_unwind when the runtime unwinds the fiber.
[[noreturn]] void park_forever(wait_reason why);

// chan_rand: a fast per-thread pseudo-random number (select's case order).
std::uint64_t chan_rand() noexcept;

}  // namespace weft::detail
