#pragma once
// run_queue.hpp: a processor's local run queue: a bounded ring with one
// producer (the thread holding the processor) and many consumers (that
// thread, and thieves stealing half), plus the one-fiber `next` slot.
//
// Design (Go's runqput/runqget/runqgrab)
//   head_ and tail_ are free-running 32-bit counters; the ring holds
//   tail_ - head_ fibers in slots [head_, tail_) mod N. The producer writes a
//   slot and then publishes it with a release store of tail_. Consumers read
//   the slots they want and then claim them with one CAS on head_; a failed
//   CAS discards what was read. Slots are relaxed atomics because a slow
//   thief may read a slot the producer is already reusing (its CAS then
//   fails), which would otherwise be a data race.
//   `next_` holds the fiber most recently readied by the running fiber, so
//   a fiber woken by a channel handoff runs next on the same core. It is
//   CAS'd by the owner and by thieves (only on their last pass), so a
//   processor whose thread is stuck cannot strand it.
//   Rejected: an unbounded queue (a mutex or a linked MPMC queue costs more
//   per push than the rare overflow to the global queue).
//
// Invariants
//   R1  Only the owner writes tail_ and the slots in [tail_, head_ + N).
//   R2  A slot's content is read before the CAS on head_ that claims it.
//   R3  tail_ - head_ <= N, as seen by the owner.
//   R4  next_ is set only by the owner; anyone may CAS it to null and then
//       owns the fiber it held.

#include <atomic>
#include <cstdint>

#include "runtime/fiber.hpp"

namespace weft::detail {

template <std::uint32_t N>
class run_queue {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "capacity must be a power of two");

 public:
  static constexpr std::uint32_t capacity = N;

  // push: owner only. Returns false when the ring is full (the caller moves
  // half of it to the global queue, see push_overflow).
  bool push(fiber* f) noexcept {
    const std::uint32_t h = head_.load(std::memory_order_acquire);  // pairs with consumers' CAS
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);  // R1: only we write it
    if (t - h >= N) return false;
    slots_[t % N].store(f, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);  // pairs with the acquire in pop/grab
    return true;
  }

  // take_half_and: owner only, when push failed. Claims the older half of
  // the ring and links it, followed by `extra`, through fiber::link. Returns
  // the number of fibers in the chain (0 if thieves emptied the ring in the
  // meantime: then push can be retried).
  std::uint32_t take_half(fiber*& first, fiber*& last) noexcept {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    const std::uint32_t n = (t - h) / 2;
    if (n == 0) return 0;
    fiber* chain[N / 2];
    for (std::uint32_t i = 0; i < n; ++i) chain[i] = slots_[(h + i) % N].load(std::memory_order_relaxed);
    // R2; release pairs with the acquire loads of head_ by the producer.
    if (!head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) return 0;
    for (std::uint32_t i = 0; i + 1 < n; ++i) chain[i]->link = chain[i + 1];
    chain[n - 1]->link = nullptr;
    first = chain[0];
    last = chain[n - 1];
    return n;
  }

  // pop: owner only (thieves use grab). FIFO.
  fiber* pop() noexcept {
    std::uint32_t h = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      fiber* f = slots_[h % N].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return f;
      }
    }
  }

  // steal_into: a thief moves half (rounded up) of this ring into `dst`,
  // which it owns and which must be empty, and returns one fiber to run
  // now. With take_next, a thief may also take the `next` fiber.
  fiber* steal_into(run_queue& dst, bool take_next) noexcept {
    const std::uint32_t dt = dst.tail_.load(std::memory_order_relaxed);
    for (;;) {
      std::uint32_t h = head_.load(std::memory_order_acquire);  // sync with other consumers
      const std::uint32_t t = tail_.load(std::memory_order_acquire);  // pairs with push's release
      std::uint32_t n = t - h;
      n -= n / 2;
      if (n == 0) {
        if (!take_next) return nullptr;
        fiber* nx = next_.load(std::memory_order_acquire);  // pairs with set_next's release
        if (nx == nullptr) return nullptr;
        if (next_.compare_exchange_strong(nx, nullptr, std::memory_order_acq_rel)) return nx;
        continue;
      }
      if (n > N / 2) continue;  // h and t read at different times; retry
      for (std::uint32_t i = 0; i < n; ++i) {
        dst.slots_[(dt + i) % N].store(slots_[(h + i) % N].load(std::memory_order_relaxed),
                                       std::memory_order_relaxed);
      }
      if (head_.compare_exchange_strong(h, h + n, std::memory_order_acq_rel)) {  // R2
        fiber* run = dst.slots_[(dt + n - 1) % N].load(std::memory_order_relaxed);
        if (n > 1) dst.tail_.store(dt + n - 1, std::memory_order_release);
        return run;
      }
    }
  }

  // set_next: owner only. Returns the fiber it displaced (or null), which
  // the caller must queue.
  fiber* set_next(fiber* f) noexcept {
    return next_.exchange(f, std::memory_order_acq_rel);  // R4; pairs with take_next/steal
  }

  // take_next: owner only.
  fiber* take_next() noexcept {
    fiber* nx = next_.load(std::memory_order_relaxed);
    if (nx == nullptr) return nullptr;
    if (next_.compare_exchange_strong(nx, nullptr, std::memory_order_acquire)) return nx;
    return nullptr;  // a thief took it
  }

  // empty: approximate, for any thread (scheduling decisions re-check).
  bool empty() const noexcept {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire) &&
           next_.load(std::memory_order_acquire) == nullptr;
  }

  // reset: drop everything. Only with no other thread touching the queue.
  void reset() noexcept {
    head_.store(0, std::memory_order_relaxed);
    tail_.store(0, std::memory_order_relaxed);
    next_.store(nullptr, std::memory_order_relaxed);
  }

  std::uint32_t size() const noexcept {
    const std::uint32_t h = head_.load(std::memory_order_acquire);
    const std::uint32_t t = tail_.load(std::memory_order_acquire);
    return (t - h) + (next_.load(std::memory_order_relaxed) != nullptr ? 1 : 0);
  }

 private:
  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  std::atomic<fiber*> next_{nullptr};
  std::atomic<fiber*> slots_[N];
};

}  // namespace weft::detail
