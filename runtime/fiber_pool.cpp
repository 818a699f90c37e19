// fiber_pool.cpp: type-stable fiber records (see fiber_pool.hpp).

#include "runtime/fiber_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
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
  if (chunks_ == nullptr) {
    page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    chunks_ = new fiber*[max_chunks];
  }
  auto* chunk = static_cast<fiber*>(map_chunk());
  for (unsigned i = 0; i < chunk_records; ++i) new (&chunk[i]) fiber();
  free_.reserve(free_.size() + chunk_records);
  for (unsigned i = chunk_records; i-- > 0;) free_.push_back(&chunk[i]);
  chunks_[n] = chunk;
  published_.store(n + 1, std::memory_order_release);  // pairs with for_each_resident_record
  free_count_.fetch_add(chunk_records, std::memory_order_relaxed);
  total_.fetch_add(chunk_records, std::memory_order_relaxed);
}

bool fiber_pool::pages_resident(fiber* chunk, unsigned char* out) noexcept {
  return ::mincore(chunk, chunk_bytes, out) == 0;
}

void fiber_pool::reset(fiber* f) noexcept {
  f->begin_incarnation();  // F5: the caller publishes the new identity
  f->link = nullptr;
  f->stack = nullptr;
  f->ops = nullptr;
  f->closure = nullptr;
  f->is_main.store(false, std::memory_order_relaxed);
  f->unwinding = false;
  f->heap_closure = false;
  f->queued_final = false;
  f->rethrows = 0;
  f->ctx.fctx = nullptr;
}

fiber* fiber_pool::acquire(fiber_cache& c) {
  if (c.count == 0) {
    os_lock lk(mu_);
    if (free_.empty() && cold_.empty()) grow_locked();
    // Warm records only while there are any (the cache is LIFO).
    if (!free_.empty()) {
      const std::size_t n = free_.size() < batch ? free_.size() : batch;
      for (std::size_t i = 0; i < n; ++i) c.items[i] = free_[free_.size() - n + i];
      free_.resize(free_.size() - n);
      c.count = static_cast<unsigned>(n);
      if (free_.size() < low_) low_ = free_.size();
    } else {
      while (c.count < batch && !cold_.empty()) c.items[c.count++] = pop_cold_locked();
    }
    free_count_.fetch_sub(c.count, std::memory_order_relaxed);
  }
  fiber* f = c.items[--c.count];
  WEFT_DCHECK(f->state.load(std::memory_order_relaxed) == fiber_state::free,
              "a cached fiber record is in use (released twice?)");
  reset(f);
  return f;
}

fiber* fiber_pool::pop_cold_locked() {
  cold_run& r = cold_.back();
  fiber* f = r.first + --r.count;
  if (r.count == 0) cold_.pop_back();
  cold_count_.fetch_sub(1, std::memory_order_relaxed);
  // P4: a released page reads `seq` as 0; start past every value it had.
  if (f->seq.load(std::memory_order_relaxed) < cold_seq_) {
    f->seq.store(cold_seq_, std::memory_order_relaxed);
  }
  return f;
}

fiber* fiber_pool::pop_locked() {
  if (free_.empty() && cold_.empty()) grow_locked();
  fiber* f;
  if (!free_.empty()) {
    f = free_.back();
    free_.pop_back();
    if (free_.size() < low_) low_ = free_.size();
  } else {
    f = pop_cold_locked();
  }
  free_count_.fetch_sub(1, std::memory_order_relaxed);
  return f;
}

fiber* fiber_pool::acquire_shared() {
  os_lock lk(mu_);
  fiber* f = pop_locked();
  WEFT_DCHECK(f->state.load(std::memory_order_relaxed) == fiber_state::free,
              "a free fiber record is in use (released twice?)");
  reset(f);
  return f;
}

std::size_t fiber_pool::scavenge() noexcept {
  std::vector<fiber*> victims;
  std::vector<cold_run> runs;
  {
    os_lock lk(mu_);
    lows_[lows_seen_ % scavenge_ticks] = low_;
    ++lows_seen_;
    low_ = free_.size();
    if (lows_seen_ < scavenge_ticks) return 0;
    std::size_t unused = free_.size();
    for (std::size_t l : lows_) unused = std::min(unused, l);
    if (unused <= scavenge_floor) return 0;
    // The first `unused` entries (the bottom of the LIFO) stayed untouched
    // for scavenge_ticks ticks (P3): detach the first n. Everything the
    // batch needs is allocated before it is detached, so it cannot be lost.
    const std::size_t excess = unused - scavenge_floor;
    const std::size_t n =
        std::min({excess, std::max(excess - excess / 2, scavenge_min_batch), scavenge_max_batch});
    try {
      victims.reserve(n);
      runs.reserve(n);
      cold_.reserve(cold_.size() + n);  // only the scavenger appends to cold_
    } catch (const std::bad_alloc&) {
      return 0;  // try again next tick
    }
    victims.assign(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
    free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
    if (free_.capacity() > 4 * std::max<std::size_t>(free_.size(), chunk_records)) {
      try {
        free_.shrink_to_fit();  // the list of a million records is 8 MB itself
      } catch (const std::bad_alloc&) {
      }
    }
    low_ = free_.size();
    for (std::size_t& l : lows_) l = l > n ? l - n : 0;
  }
  // Detached (P1): release the whole pages inside each run of adjacent
  // records. A page shared with a record outside the batch stays.
  std::sort(victims.begin(), victims.end());
  // P4: the largest `seq` the batch holds, read before its pages go (an
  // even value: a free record's incarnation is over).
  std::uint32_t top_seq = 0;
  for (const fiber* f : victims)
    top_seq = std::max(top_seq, f->seq.load(std::memory_order_relaxed));
  WEFT_DCHECK(top_seq % 2 == 0, "a free fiber record is mid-incarnation");
  const auto page = static_cast<std::uintptr_t>(page_);
  std::size_t released = 0;
  for (std::size_t i = 0; i < victims.size();) {
    std::size_t j = i + 1;
    while (j < victims.size() && victims[j] == victims[j - 1] + 1) ++j;
    const auto lo = (reinterpret_cast<std::uintptr_t>(victims[i]) + page - 1) & ~(page - 1);
    const auto hi = reinterpret_cast<std::uintptr_t>(victims[j - 1] + 1) & ~(page - 1);
    if (hi > lo) {
      ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
      released += hi - lo;
    }
    runs.push_back(cold_run{victims[i], j - i});  // reserved
    i = j;
  }
  os_lock lk(mu_);
  cold_seq_ = std::max(cold_seq_, top_seq);             // before any of them can be popped (P4)
  cold_.insert(cold_.end(), runs.begin(), runs.end());  // reserved
  cold_count_.fetch_add(victims.size(), std::memory_order_relaxed);
  return released;
}

void fiber_pool::retire(fiber* f) noexcept {
#if WEFT_DEBUG_CHECKS
  // dead -> free (F4), or free -> free for a record whose closure could not
  // be built (it never ran: discard_fiber).
  const fiber_state prior = f->state.exchange(fiber_state::free, std::memory_order_relaxed);
  if (prior != fiber_state::dead && prior != fiber_state::free) {
    transition_failed(f, prior, fiber_state::dead, fiber_state::free, __FILE__, __LINE__);
  }
#else
  f->state.store(fiber_state::free, std::memory_order_relaxed);
#endif
}

void fiber_pool::release(fiber_cache& c, fiber* f) noexcept {
  retire(f);
  if (c.count == fiber_cache::capacity) {
    // Hand the older half back.
    constexpr unsigned half = fiber_cache::capacity / 2;
    {
      os_lock lk(mu_);
      free_.insert(free_.end(), c.items, c.items + half);
    }
    free_count_.fetch_add(half, std::memory_order_relaxed);
    for (unsigned i = 0; i < half; ++i) c.items[i] = c.items[i + half];
    c.count = half;
  }
  c.items[c.count++] = f;
}

void fiber_pool::release_shared(fiber* f) noexcept {
  retire(f);
  os_lock lk(mu_);
  free_.push_back(f);
  free_count_.fetch_add(1, std::memory_order_relaxed);
}

void fiber_pool::flush(fiber_cache& c) noexcept {
  if (c.count == 0) return;
  os_lock lk(mu_);
  free_.insert(free_.end(), c.items, c.items + c.count);
  free_count_.fetch_add(c.count, std::memory_order_relaxed);
  c.count = 0;
}

void fiber_pool::destroy() noexcept {
  os_lock lk(mu_);
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
  cold_.clear();
  cold_.shrink_to_fit();
  low_ = 0;
  lows_seen_ = 0;
  cold_seq_ = 0;  // the chunks are gone: no record, no reader left
  free_count_.store(0, std::memory_order_relaxed);
  cold_count_.store(0, std::memory_order_relaxed);
  total_.store(0, std::memory_order_relaxed);
}

}  // namespace weft::detail
