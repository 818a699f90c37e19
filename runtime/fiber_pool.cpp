// fiber_pool.cpp: type-stable fiber records (see fiber_pool.hpp).

#include "runtime/fiber_pool.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace weft::detail {

namespace {
// map_chunk: chunk_bytes of zeroed, populated memory. MAP_POPULATE faults
// the pages in one system call instead of one fault per 4 KiB. (Huge pages
// were tried: faster on average, but THP's synchronous compaction stalled
// a whole spawn run for hundreds of milliseconds now and then.)
void* map_chunk() {
  void* mem = ::mmap(nullptr, fiber_pool::chunk_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  return mem;
}
}  // namespace

void fiber_pool::grow_locked() {
  const std::size_t n = published_.load(std::memory_order_relaxed);
  if (n == max_chunks) throw std::bad_alloc();
  if (chunks_ == nullptr) chunks_ = new fiber*[max_chunks];
  auto* chunk = static_cast<fiber*>(map_chunk());
  for (unsigned i = 0; i < chunk_records; ++i) new (&chunk[i]) fiber();
  free_.reserve(free_.size() + chunk_records);
  for (unsigned i = chunk_records; i-- > 0;) free_.push_back(&chunk[i]);
  chunks_[n] = chunk;
  published_.store(n + 1, std::memory_order_release);  // pairs with for_each_record
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
  f->queued_final = false;
  f->rethrows = 0;
  f->ctx.fctx = nullptr;
}

fiber* fiber_pool::acquire(fiber_cache& c) {
  if (c.count == 0) {
    std::lock_guard<std::mutex> lk(mu_);
    if (free_.empty()) grow_locked();
    const std::size_t n = free_.size() < batch ? free_.size() : batch;
    for (std::size_t i = 0; i < n; ++i) c.items[i] = free_[free_.size() - n + i];
    free_.resize(free_.size() - n);
    c.count = static_cast<unsigned>(n);
    free_count_.fetch_sub(n, std::memory_order_relaxed);
  }
  fiber* f = c.items[--c.count];
  reset(f);
  return f;
}

fiber* fiber_pool::acquire_shared() {
  std::lock_guard<std::mutex> lk(mu_);
  if (free_.empty()) grow_locked();
  fiber* f = free_.back();
  free_.pop_back();
  free_count_.fetch_sub(1, std::memory_order_relaxed);
  reset(f);
  return f;
}

void fiber_pool::release(fiber_cache& c, fiber* f) noexcept {
  f->state.store(fiber_state::free, std::memory_order_relaxed);
  if (c.count == fiber_cache::capacity) {
    // Hand the older half back.
    constexpr unsigned half = fiber_cache::capacity / 2;
    {
      std::lock_guard<std::mutex> lk(mu_);
      free_.insert(free_.end(), c.items, c.items + half);
    }
    free_count_.fetch_add(half, std::memory_order_relaxed);
    for (unsigned i = 0; i < half; ++i) c.items[i] = c.items[i + half];
    c.count = half;
  }
  c.items[c.count++] = f;
}

void fiber_pool::release_shared(fiber* f) noexcept {
  f->state.store(fiber_state::free, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lk(mu_);
  free_.push_back(f);
  free_count_.fetch_add(1, std::memory_order_relaxed);
}

void fiber_pool::flush(fiber_cache& c) noexcept {
  if (c.count == 0) return;
  std::lock_guard<std::mutex> lk(mu_);
  free_.insert(free_.end(), c.items, c.items + c.count);
  free_count_.fetch_add(c.count, std::memory_order_relaxed);
  c.count = 0;
}

void fiber_pool::destroy() noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  const std::size_t n = published_.load(std::memory_order_relaxed);
  published_.store(0, std::memory_order_relaxed);
  for (std::size_t c = 0; c < n; ++c) {
    for (unsigned i = 0; i < chunk_records; ++i) chunks_[c][i].~fiber();
    ::munmap(chunks_[c], chunk_bytes);
  }
  delete[] chunks_;
  chunks_ = nullptr;
  free_.clear();
  free_.shrink_to_fit();
  free_count_.store(0, std::memory_order_relaxed);
  total_.store(0, std::memory_order_relaxed);
}

}  // namespace weft::detail
