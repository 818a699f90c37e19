#pragma once
// run_queue.hpp: a processor's local run queue: a bounded FIFO ring plus
// the one-fiber `next` slot, used by one owner (the thread holding the
// processor) and, rarely, by thieves (idle workers, sysmon).
//
// Design
//   The owner touches the queue at every scheduling decision; thieves come
//   only when a worker runs dry. So the owner's operations are plain loads
//   and stores (no locked instruction: one costs ~8.5 ns on the dev VM, as
//   much as a whole context switch), and a thief pays for exclusion with an
//   asymmetric barrier (asym_fence.hpp, ~0.34 us):
//
//     owner op:  in_op_ = 1; asym_light; if thief_ != 0: back off and wait;
//                ...plain queue reads and writes...; in_op_ = 0 (release)
//     thief:     CAS thief_ 0 -> 1; asym_heavy; wait until in_op_ == 0;
//                ...take half...; thief_ = 0 (release)
//
//   This is a Dekker handshake: asym_heavy makes the owner's `in_op_ = 1`
//   visible to the thief, or the owner's later load sees `thief_ == 1`.
//   Thieves first look at the queue without exclusion (looks_empty) so an
//   empty victim costs them nothing.
//   `next_` holds the fiber most recently readied by the running fiber, so
//   a fiber woken by a channel handoff runs next on the same core; thieves
//   take it only on their last pass, and only if it has sat there a while.
//   Rejected: Go's CAS-based ring (a CAS in every owner pop and in every
//   write of `next`: four locked instructions per channel round trip) and
//   an unbounded queue (overflow to the global queue is rare and cheap).
//
// Invariants
//   R1  head_, tail_, next_ and the slots are written only inside an owner
//       section or a thief section, and the two exclude each other.
//   R2  At most one thief section is open per queue (thief_ CAS).
//   R3  Neither section waits for anything but the other side's exit, and a
//       thief never opens an owner section while in a thief section (no
//       deadlock between two workers stealing from each other).
//   R4  0 <= tail_ - head_ <= N.
//   Outside sections, head_/tail_/next_ may be read by anyone as a hint
//   (relaxed), e.g. by idle workers re-checking for work (scheduler.cpp K3).

#include <sched.h>

#include <atomic>
#include <cstdint>

#include "runtime/asym_fence.hpp"
#include "runtime/fiber.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/detail/spinlock.hpp"

namespace weft::detail {

template <std::uint32_t N>
class run_queue {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "capacity must be a power of two");

 public:
  static constexpr std::uint32_t capacity = N;

  // ---- owner side: each call is one owner section ----

  // push: false when the ring is full (see take_half).
  bool push(fiber* f) noexcept {
    owner_section s(*this);
    check_queued(f);
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    WEFT_DCHECK(t - h <= N, "run_queue R4");
    if (t - h >= N) return false;
    slots_[t % N].store(f, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_relaxed);
    return true;
  }

  // push_many: push up to `n` fibers from out[]; returns how many fit.
  std::uint32_t push_many(fiber* const* out, std::uint32_t n) noexcept {
    owner_section s(*this);
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    std::uint32_t t = tail_.load(std::memory_order_relaxed);
    std::uint32_t k = 0;
    for (; k < n && t - h < N; ++k, ++t) {
      check_queued(out[k]);
      slots_[t % N].store(out[k], std::memory_order_relaxed);
    }
    tail_.store(t, std::memory_order_relaxed);
    return k;
  }

  fiber* pop() noexcept {
    owner_section s(*this);
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t == h) return nullptr;
    WEFT_DCHECK(t - h <= N, "run_queue R4");
    fiber* f = slots_[h % N].load(std::memory_order_relaxed);
    check_queued(f);
    head_.store(h + 1, std::memory_order_relaxed);
    // The next record is probably cold (queued long ago): start loading it.
    if (t - h > 1) __builtin_prefetch(slots_[(h + 1) % N].load(std::memory_order_relaxed));
    return f;
  }

  // take_half: move the older half of the ring into out[] (capacity N/2);
  // returns the count (the caller moves them to the global queue).
  std::uint32_t take_half(fiber** out) noexcept {
    owner_section s(*this);
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t n = (tail_.load(std::memory_order_relaxed) - h) / 2;
    for (std::uint32_t i = 0; i < n; ++i)
      out[i] = slots_[(h + i) % N].load(std::memory_order_relaxed);
    head_.store(h + n, std::memory_order_relaxed);
    return n;
  }

  // set_next: returns the fiber it displaced (or null); the caller queues it.
  fiber* set_next(fiber* f) noexcept {
    owner_section s(*this);
    check_queued(f);
    fiber* old = next_.load(std::memory_order_relaxed);
    next_.store(f, std::memory_order_relaxed);
    return old;
  }

  fiber* take_next() noexcept {
    if (next_.load(std::memory_order_relaxed) == nullptr)
      return nullptr;  // own write, or a thief's (seen late: harmless)
    owner_section s(*this);
    fiber* f = next_.load(std::memory_order_relaxed);
    if (f != nullptr) next_.store(nullptr, std::memory_order_relaxed);
    return f;
  }

  // ---- thief side ----

  // looks_empty: a hint, readable by anyone without a section.
  bool looks_empty() const noexcept {
    return head_.load(std::memory_order_relaxed) == tail_.load(std::memory_order_relaxed) &&
           next_.load(std::memory_order_relaxed) == nullptr;
  }
  bool ring_looks_empty() const noexcept {
    return head_.load(std::memory_order_relaxed) == tail_.load(std::memory_order_relaxed);
  }
  fiber* peek_next() const noexcept { return next_.load(std::memory_order_relaxed); }
  // head_hint: advances whenever anyone takes from the ring (sysmon uses it
  // to tell a queue that is being served from one that is stuck).
  std::uint32_t head_hint() const noexcept { return head_.load(std::memory_order_relaxed); }

  // steal: take half the ring (rounded up) into out[] (capacity N/2), or,
  // with take_next and an empty ring, the `next` fiber. Returns the count;
  // 0 if the queue is empty or another thief is at work on it.
  std::uint32_t steal(fiber** out, bool take_next) noexcept {
    if (looks_empty() && !take_next) return 0;
    if (!thief_enter()) return 0;
    perturb(perturb_site::steal);  // the owner waits for us meanwhile (R3)
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    std::uint32_t n = tail_.load(std::memory_order_relaxed) - h;
    WEFT_DCHECK(n <= N, "run_queue R4 (seen by a thief)");
    n -= n / 2;
    if (n != 0) {
      for (std::uint32_t i = 0; i < n; ++i)
        out[i] = slots_[(h + i) % N].load(std::memory_order_relaxed);
      head_.store(h + n, std::memory_order_relaxed);
    } else if (take_next) {
      if (fiber* f = next_.load(std::memory_order_relaxed)) {
        next_.store(nullptr, std::memory_order_relaxed);
        out[0] = f;
        n = 1;
      }
    }
    thief_exit();
    return n;
  }

  // ---- any thread ----

  std::uint32_t size() const noexcept {  // a hint
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    return (t - h) + (next_.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
  }

  // reset: drop everything. Only when no other thread can touch the queue.
  void reset() noexcept {
    head_.store(0, std::memory_order_relaxed);
    tail_.store(0, std::memory_order_relaxed);
    next_.store(nullptr, std::memory_order_relaxed);
  }

 private:
  // always_inline: it is a few instructions on every owner operation, and
  // GCC would otherwise call it out of line from callers it deems executed
  // once, such as the [[noreturn]] exit_current (switch.cpp).
  struct owner_section {
    run_queue& q;
    [[gnu::always_inline]] explicit owner_section(run_queue& rq) noexcept : q(rq) {
      WEFT_DCHECK(q.in_op_.load(std::memory_order_relaxed) == 0,
                  "run_queue R1: owner sections nest (two owners?)");
      q.in_op_.store(1, std::memory_order_relaxed);
      asym_light();
      if (q.thief_.load(std::memory_order_acquire) != 0) q.owner_wait();  // pairs with thief_exit
    }
    // pairs with thief_enter
    [[gnu::always_inline]] ~owner_section() { q.in_op_.store(0, std::memory_order_release); }
  };

  void owner_wait() noexcept {
    for (;;) {
      in_op_.store(0, std::memory_order_release);
      for (unsigned spins = 0; thief_.load(std::memory_order_acquire) != 0; ++spins) {
        if (spins < 256) {
          cpu_relax();
        } else {
          ::sched_yield();
        }
      }
      in_op_.store(1, std::memory_order_relaxed);
      asym_light();
      if (thief_.load(std::memory_order_acquire) == 0) return;
    }
  }

  bool thief_enter() noexcept {
    std::uint32_t expected = 0;
    if (thief_.load(std::memory_order_relaxed) != 0 ||
        !thief_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
      return false;  // R2: someone else is stealing here
    }
    asym_heavy();
    for (unsigned spins = 0; in_op_.load(std::memory_order_acquire) != 0;
         ++spins) {  // pairs with ~owner_section
      if (spins < 256) {
        cpu_relax();
      } else {
        ::sched_yield();
      }
    }
    return true;
  }
  void thief_exit() noexcept {
    WEFT_DCHECK(thief_.load(std::memory_order_relaxed) == 1, "run_queue R2");
    thief_.store(0, std::memory_order_release);
  }

  // check_queued: fiber.hpp F1: only runnable fibers are queued (a fiber
  // readied twice, or queued while it runs, is caught here).
  static void check_queued(const fiber* f) noexcept {
    WEFT_DCHECK(f != nullptr && f->state.load(std::memory_order_relaxed) == fiber_state::runnable,
                "fiber.hpp F1: a queued fiber is runnable");
  }

  alignas(64) std::atomic<std::uint32_t> in_op_{0};  // owner: 1 inside an owner section
  std::atomic<std::uint32_t> head_{0};
  std::atomic<std::uint32_t> tail_{0};
  std::atomic<fiber*> next_{nullptr};
  std::atomic<fiber*> slots_[N];
  alignas(64) std::atomic<std::uint32_t> thief_{0};  // 1 while a thief section is open
};

}  // namespace weft::detail
