#pragma once
// chan_helpers.hpp: helpers shared by the channel, select and timer suites.

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace test {

// waiting: parties queued on c (senders or receivers), read under its lock.
template <class T>
std::size_t waiting(const weft::chan<T>& c, bool senders) {
  return weft::detail::chan_access::waiting(c, senders);
}

// await_waiting: yield until at least k parties are queued on c. Orders a
// test after "k fibers are blocked" without sleeping.
template <class T>
void await_waiting(const weft::chan<T>& c, std::size_t k, bool senders) {
  while (waiting(c, senders) < k) weft::yield();
}

// counted: a value that counts its live instances, to show that channels
// destroy exactly what they hold.
struct counted {
  static inline std::atomic<long> live{0};
  int v = 0;
  explicit counted(int x) : v(x) { live.fetch_add(1); }
  counted(const counted& o) : v(o.v) { live.fetch_add(1); }
  counted(counted&& o) noexcept : v(o.v) { live.fetch_add(1); }
  counted& operator=(const counted&) = default;
  ~counted() { live.fetch_sub(1); }
};

// no_default: neither default-constructible nor assignable.
struct no_default {
  const int v;
  explicit no_default(int x) : v(x) {}
  no_default(no_default&&) noexcept = default;
};

// throwing_move: a move constructor that may throw (so the channel boxes
// it); it throws when told to.
struct throwing_move {
  int v = 0;
  bool poison = false;
  explicit throwing_move(int x, bool p = false) : v(x), poison(p) {}
  throwing_move(const throwing_move& o) : v(o.v), poison(o.poison) {
    if (poison) throw std::runtime_error("poisoned copy");
  }
  throwing_move(throwing_move&& o) noexcept(false) : v(o.v), poison(o.poison) {
    if (poison) throw std::runtime_error("poisoned move");
  }
};

// seen_set: records each value 0..n-1 once; reports duplicates.
class seen_set {
 public:
  explicit seen_set(std::size_t n) : bits_(n) {}
  // mark: false if v was out of range or already seen.
  bool mark(std::uint64_t v) {
    if (v >= bits_.size()) return false;
    return !bits_[v].exchange(true, std::memory_order_relaxed);
  }
  std::size_t count() const {
    std::size_t k = 0;
    for (auto& b : bits_) k += b.load(std::memory_order_relaxed) ? 1 : 0;
    return k;
  }

 private:
  std::vector<std::atomic<bool>> bits_;
};

}  // namespace test
