// fiber_pool.cpp: type-stable fiber records (see fiber_pool.hpp).

#include "runtime/fiber_pool.hpp"

#include <new>

namespace weft::detail {

void fiber_pool::grow_locked() {
  auto* chunk = static_cast<fiber*>(
      ::operator new(sizeof(fiber) * chunk_records, std::align_val_t{64}));
  for (unsigned i = 0; i < chunk_records; ++i) new (&chunk[i]) fiber();
  for (unsigned i = chunk_records; i-- > 0;) {
    chunk[i].link = free_;
    free_ = &chunk[i];
  }
  chunks_.push_back(chunk);
  published_.store(chunks_.size(), std::memory_order_release);  // pairs with for_each_record
  free_count_.fetch_add(chunk_records, std::memory_order_relaxed);
  total_.fetch_add(chunk_records, std::memory_order_relaxed);
}

void fiber_pool::reset(fiber* f) noexcept {
  f->link = nullptr;
  f->stack = nullptr;
  f->ops = nullptr;
  f->closure = nullptr;
  f->is_main = false;
  f->unwinding = false;
  f->heap_closure = false;
  f->ctx.fctx = nullptr;
}

fiber* fiber_pool::acquire(fiber_cache& c) {
  if (c.head == nullptr) {
    std::lock_guard<std::mutex> lk(mu_);
    if (free_ == nullptr) grow_locked();
    unsigned n = 0;
    while (n < batch && free_ != nullptr) {
      fiber* f = free_;
      free_ = f->link;
      f->link = c.head;
      c.head = f;
      ++n;
    }
    c.count += n;
    free_count_.fetch_sub(n, std::memory_order_relaxed);
  }
  fiber* f = c.head;
  c.head = f->link;
  --c.count;
  reset(f);
  return f;
}

fiber* fiber_pool::acquire_shared() {
  std::lock_guard<std::mutex> lk(mu_);
  if (free_ == nullptr) grow_locked();
  fiber* f = free_;
  free_ = f->link;
  free_count_.fetch_sub(1, std::memory_order_relaxed);
  reset(f);
  return f;
}

void fiber_pool::release(fiber_cache& c, fiber* f) noexcept {
  f->state.store(fiber_state::free, std::memory_order_relaxed);
  f->link = c.head;
  c.head = f;
  if (++c.count <= cache_max) return;
  // Hand the older half back.
  fiber* keep = c.head;
  for (unsigned i = 1; i < cache_max / 2; ++i) keep = keep->link;
  fiber* rest = keep->link;
  keep->link = nullptr;
  const unsigned n = c.count - cache_max / 2;
  c.count = cache_max / 2;
  fiber* tail = rest;
  while (tail->link != nullptr) tail = tail->link;
  std::lock_guard<std::mutex> lk(mu_);
  tail->link = free_;
  free_ = rest;
  free_count_.fetch_add(n, std::memory_order_relaxed);
}

void fiber_pool::release_shared(fiber* f) noexcept {
  f->state.store(fiber_state::free, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lk(mu_);
  f->link = free_;
  free_ = f;
  free_count_.fetch_add(1, std::memory_order_relaxed);
}

void fiber_pool::flush(fiber_cache& c) noexcept {
  if (c.head == nullptr) return;
  fiber* tail = c.head;
  while (tail->link != nullptr) tail = tail->link;
  std::lock_guard<std::mutex> lk(mu_);
  tail->link = free_;
  free_ = c.head;
  free_count_.fetch_add(c.count, std::memory_order_relaxed);
  c.head = nullptr;
  c.count = 0;
}

void fiber_pool::destroy() noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  for (fiber* chunk : chunks_) {
    for (unsigned i = 0; i < chunk_records; ++i) chunk[i].~fiber();
    ::operator delete(chunk, std::align_val_t{64});
  }
  published_.store(0, std::memory_order_relaxed);
  chunks_.clear();
  chunks_.shrink_to_fit();
  free_ = nullptr;
  free_count_.store(0, std::memory_order_relaxed);
  total_.store(0, std::memory_order_relaxed);
}

}  // namespace weft::detail
