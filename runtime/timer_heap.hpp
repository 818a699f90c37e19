#pragma once
// timer_heap.hpp: a 4-ary min-heap of timers ordered by deadline.
//
// A 4-ary heap is shallower than a binary one (log4 n levels) and its four
// children share a cache line or two, which is why Go uses it too. Each
// timer records its position so removal (cancel, stop) is O(log n).
// Not thread-safe: the owner (timers.cpp) guards it with its lock.

#include <cstdint>
#include <vector>

namespace weft::detail {

struct timer {
  static constexpr std::uint32_t npos = 0xffffffffu;
  std::int64_t when = 0;       // CLOCK_MONOTONIC ns (steady_clock's epoch on Linux)
  std::int64_t period = 0;     // > 0: re-armed by `period` after firing (tickers)
  std::uint32_t index = npos;  // position in the heap; npos when not queued
  // Runs on the thread that fires the timer, under the timers lock: must be
  // short and must not block (it typically unparks one fiber).
  void (*fire)(timer* t) = nullptr;
  // For timers the runtime owns on the heap (after, ticker): called instead
  // of fire when the runtime shuts down with the timer still queued.
  void (*dispose)(timer* t) = nullptr;
  void* arg = nullptr;
};

class timer_heap {
 public:
  bool empty() const noexcept { return h_.empty(); }
  std::size_t size() const noexcept { return h_.size(); }
  timer* top() const noexcept { return h_.front().t; }
  timer* at(std::size_t i) const noexcept { return h_[i].t; }  // i < size(), in heap order

  void push(timer* t) {
    h_.push_back({t->when, t});  // may throw: t stays out (timers.hpp T1)
    t->index = static_cast<std::uint32_t>(h_.size() - 1);
    up(t->index);
  }

  // remove: t must be in this heap.
  void remove(timer* t) noexcept {
    const std::uint32_t i = t->index;
    const std::uint32_t last = static_cast<std::uint32_t>(h_.size() - 1);
    t->index = timer::npos;
    if (i != last) {
      h_[i] = h_[last];
      h_[i].t->index = i;
      h_.pop_back();
      if (!up(i)) down(i);
    } else {
      h_.pop_back();
    }
  }

  // clear: empty the heap, disposing of runtime-owned timers.
  // Returns how many were disposed.
  std::size_t clear() noexcept {
    std::vector<entry> old;
    old.swap(h_);
    std::size_t disposed = 0;
    for (entry& e : old) {
      e.t->index = timer::npos;
      if (e.t->dispose != nullptr) {
        e.t->dispose(e.t);
        ++disposed;
      }
    }
    return disposed;
  }

 private:
  // The deadline is kept next to the pointer, so sifting compares entries
  // of this array (a node's four children share one cache line) instead of
  // loading every timer it passes, which the thread that armed it may still
  // have in its cache.
  struct entry {
    std::int64_t when;
    timer* t;
  };

  bool up(std::uint32_t i) noexcept {
    const entry e = h_[i];
    const std::uint32_t start = i;
    while (i > 0) {
      const std::uint32_t parent = (i - 1) / 4;
      if (h_[parent].when <= e.when) break;
      h_[i] = h_[parent];
      h_[i].t->index = i;
      i = parent;
    }
    h_[i] = e;
    e.t->index = i;
    return i != start;
  }

  void down(std::uint32_t i) noexcept {
    const std::uint32_t n = static_cast<std::uint32_t>(h_.size());
    const entry e = h_[i];
    for (;;) {
      const std::uint32_t c = 4 * i + 1;
      if (c >= n) break;
      std::uint32_t best = c;
      const std::uint32_t end = c + 4 < n ? c + 4 : n;
      for (std::uint32_t k = c + 1; k < end; ++k) {
        if (h_[k].when < h_[best].when) best = k;
      }
      if (e.when <= h_[best].when) break;
      h_[i] = h_[best];
      h_[i].t->index = i;
      i = best;
    }
    h_[i] = e;
    e.t->index = i;
  }

  std::vector<entry> h_;
};

}  // namespace weft::detail
