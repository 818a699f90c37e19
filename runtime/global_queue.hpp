#pragma once
// global_queue.hpp: the run queue shared by all processors, for overflow
// from local queues and for fibers readied outside any processor (the
// poller, timers, foreign threads, workers returning from blocking calls).
//
// A mutex-protected growable ring of fiber pointers. Batches move as
// arrays of pointers, so a million queued fibers are never walked through
// their (cold, 256-byte) records: an intrusive list made every batch
// operation one cache miss per fiber, 30% of the spawn benchmark.
// size_ is written under mu_ and read without it as a hint (relaxed);
// every decision taken on the hint is re-checked under mu_ or covered by
// the K1/K3 handshake (scheduler.cpp).
// urgent_: fibers pushed to the front (timer wakeups from the netpoller
// thread) are still at the front. Written under mu_, read by every other
// scheduling decision without it (relaxed, pick_local): a stale true
// costs one look at the queue, a stale false at most the 61-decision wait
// the queue had before. It has a cache line of its own, written only by
// front pushes and the pops that take them, so the per-decision read stays
// a hit while other pushes and pops move size_.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/fiber.hpp"
#include "runtime/locks.hpp"

namespace weft::detail {

class global_queue {
 public:
  void push(fiber* f) noexcept { push_many(&f, 1); }

  void push_many(fiber* const* fs, std::size_t n) noexcept {
    os_lock lk(mu_);
    reserve_locked(count_ + n);
    for (std::size_t i = 0; i < n; ++i) buf_[(head_ + count_ + i) & mask_] = fs[i];
    count_ += n;
    size_.store(count_, std::memory_order_relaxed);
  }

  // push_front_many: queue ahead of everything queued, in order (fibers
  // woken by their timers, which should not wait behind a backlog).
  void push_front_many(fiber* const* fs, std::size_t n) noexcept {
    os_lock lk(mu_);
    reserve_locked(count_ + n);
    head_ = (head_ - n) & mask_;
    for (std::size_t i = 0; i < n; ++i) buf_[(head_ + i) & mask_] = fs[i];
    count_ += n;
    size_.store(count_, std::memory_order_relaxed);
    front_left_ += n;
    urgent_.store(true, std::memory_order_relaxed);
  }

  // urgent_hint: something pushed to the front waits there.
  bool urgent_hint() const noexcept { return urgent_.load(std::memory_order_relaxed); }

  // pop_many: move up to max fibers into out[]; returns the count.
  std::size_t pop_many(fiber** out, std::size_t max) noexcept {
    os_lock lk(mu_);
    const std::size_t n = count_ < max ? count_ : max;
    for (std::size_t i = 0; i < n; ++i) out[i] = buf_[(head_ + i) & mask_];
    head_ = (head_ + n) & mask_;
    count_ -= n;
    size_.store(count_, std::memory_order_relaxed);
    taken_.store(taken_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    if (front_left_ != 0) {
      front_left_ = front_left_ > n ? front_left_ - n : 0;
      if (front_left_ == 0) urgent_.store(false, std::memory_order_relaxed);
    }
    return n;
  }

  std::size_t size_hint() const noexcept { return size_.load(std::memory_order_relaxed); }
  // taken_hint: fibers ever taken out (sysmon: is anyone serving the queue?).
  std::uint64_t taken_hint() const noexcept { return taken_.load(std::memory_order_relaxed); }

  // clear: drop every entry (shutdown, after all workers stopped).
  void clear() noexcept {
    os_lock lk(mu_);
    buf_.reset();
    head_ = count_ = 0;
    mask_ = 0;
    cap_ = 0;
    size_.store(0, std::memory_order_relaxed);
    front_left_ = 0;
    urgent_.store(false, std::memory_order_relaxed);
  }

 private:
  void reserve_locked(std::size_t need) noexcept WEFT_REQUIRES(mu_) {
    if (need <= cap_) return;
    std::size_t cap = cap_ == 0 ? 1024 : cap_;
    while (cap < need) cap *= 2;
    std::unique_ptr<fiber*[]> nb(new fiber*[cap]);
    for (std::size_t i = 0; i < count_; ++i) nb[i] = buf_[(head_ + i) & mask_];
    buf_ = std::move(nb);
    head_ = 0;
    cap_ = cap;
    mask_ = cap - 1;
  }

  os_mutex mu_;
  std::unique_ptr<fiber*[]> buf_ WEFT_GUARDED_BY(mu_);
  std::size_t cap_ WEFT_GUARDED_BY(mu_) = 0;
  std::size_t mask_ WEFT_GUARDED_BY(mu_) = 0;
  std::size_t head_ WEFT_GUARDED_BY(mu_) = 0;
  std::size_t count_ WEFT_GUARDED_BY(mu_) = 0;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> taken_{0};  // written under mu_, read as a hint
  // Entries at the front pushed there by push_front_many (the pops take
  // from the front, so they are the first front_left_ entries).
  std::size_t front_left_ WEFT_GUARDED_BY(mu_) = 0;
  alignas(64) std::atomic<bool> urgent_{false};  // front_left_ != 0; see the top
};

}  // namespace weft::detail
