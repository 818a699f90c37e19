#pragma once
// global_queue.hpp: the run queue shared by all processors, for overflow
// from local queues and for fibers readied outside any processor (the
// poller, timers, foreign threads, workers returning from blocking calls).
//
// A mutex-protected intrusive FIFO through fiber::link. size_ is written
// under mu_ and read without it as a hint (relaxed): every decision taken on
// the hint is re-checked under mu_ (see "Spinning" in scheduler.cpp).

#include <atomic>
#include <cstddef>
#include <mutex>

#include "runtime/fiber.hpp"

namespace weft::detail {

class global_queue {
 public:
  void push(fiber* f) noexcept { push_chain(f, f, 1); }

  // push_chain: append first..last (linked through fiber::link), n fibers.
  void push_chain(fiber* first, fiber* last, std::size_t n) noexcept {
    last->link = nullptr;
    std::lock_guard<std::mutex> lk(mu_);
    if (tail_ == nullptr) {
      head_ = first;
    } else {
      tail_->link = first;
    }
    tail_ = last;
    size_.store(size_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // pop_chain: detach up to max fibers; returns the first (linked through
  // fiber::link, null-terminated) and their count in n.
  fiber* pop_chain(std::size_t max, std::size_t& n) noexcept {
    std::lock_guard<std::mutex> lk(mu_);
    return pop_chain_locked(max, n);
  }

  fiber* pop_chain_locked(std::size_t max, std::size_t& n) noexcept {
    n = 0;
    fiber* first = head_;
    fiber* last = nullptr;
    for (fiber* f = head_; f != nullptr && n < max; f = f->link) {
      last = f;
      ++n;
    }
    if (n == 0) return nullptr;
    head_ = last->link;
    if (head_ == nullptr) tail_ = nullptr;
    last->link = nullptr;
    size_.store(size_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    return first;
  }

  std::size_t size_hint() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::mutex& mutex() noexcept { return mu_; }
  std::size_t size_locked() const noexcept { return size_.load(std::memory_order_relaxed); }

  // clear: drop every entry (shutdown, after all workers stopped).
  void clear() noexcept {
    std::lock_guard<std::mutex> lk(mu_);
    head_ = tail_ = nullptr;
    size_.store(0, std::memory_order_relaxed);
  }

 private:
  std::mutex mu_;
  fiber* head_ = nullptr;  // guarded by mu_
  fiber* tail_ = nullptr;  // guarded by mu_
  std::atomic<std::size_t> size_{0};
};

}  // namespace weft::detail
