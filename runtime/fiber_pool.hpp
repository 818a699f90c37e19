#pragma once
// fiber_pool.hpp: fiber records, type-stable.
//
// Records come in 2 MiB chunks, populated by the kernel in one go (a page
// fault per 4 KiB of records cost ~40 ns per fiber in the spawn benchmark
// on the dev VM: ~1.6 us per first touch), that stay
// mapped until the runtime is torn down, so a dump (or the gdb extension)
// may walk every record while workers run: a record's `state` tells whether
// it is a fiber. Workers keep a private LIFO cache and trade batches of 64
// with a global free list. Free lists are arrays of pointers, not links
// through the records: moving a batch must not touch 64 cold records.
//
// The chunk directory is a fixed array of chunk pointers, appended to under
// mu_ and published with a release store of its length, so dumps iterate it
// without a lock and the gdb extension (tools/weft-gdb.py) can walk it in a
// live process or a core file. (A tbb::concurrent_vector was used first:
// same lock-free reads, but its segment table is opaque to a debugger.)
//
// Invariants
//   P1  A record is in exactly one of: a cache, the global free list, or
//       live (state != free).
//   P2  Chunks are freed only by destroy(), with no fiber alive.
//
// Lock order: fiber_pool::mu_ is a leaf.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "runtime/fiber.hpp"

namespace weft::detail {

struct fiber_cache {
  static constexpr unsigned capacity = 128;
  fiber* items[capacity];  // owned by the processor holding the cache
  unsigned count = 0;
};

class fiber_pool {
 public:
  static constexpr std::size_t chunk_bytes = std::size_t{2} << 20;
  static constexpr std::size_t max_chunks = 1 << 16;  // 128 GiB of records
  static constexpr unsigned chunk_records = chunk_bytes / sizeof(fiber);

  fiber* acquire(fiber_cache& c);
  fiber* acquire_shared();  // no cache: foreign threads
  void release(fiber_cache& c, fiber* f) noexcept;
  void release_shared(fiber* f) noexcept;
  void flush(fiber_cache& c) noexcept;
  void destroy() noexcept;

  // for_each_record: visit every record ever allocated (live or free).
  template <class Fn>
  void for_each_record(Fn&& fn) {
    const std::size_t n = published_.load(std::memory_order_acquire);  // pairs with grow_locked
    for (std::size_t i = 0; i < n; ++i) {
      fiber* chunk = chunks_[i];
      for (unsigned j = 0; j < chunk_records; ++j) fn(&chunk[j]);
    }
  }

  // live: records not in the free list or a cache. Exact only when caches
  // are flushed.
  std::uint64_t total() const noexcept { return total_.load(std::memory_order_relaxed); }
  std::uint64_t free_shared() const noexcept { return free_count_.load(std::memory_order_relaxed); }

 private:
  static constexpr unsigned batch = 64;

  void grow_locked();  // requires mu_
  static void reset(fiber* f) noexcept;

  std::mutex mu_;
  std::vector<fiber*> free_;  // guarded by mu_
  // Written under mu_; read lock-free only as statistics.
  std::atomic<std::uint64_t> free_count_{0};
  std::atomic<std::uint64_t> total_{0};
  // chunks_[0, published_) are valid. Written under mu_; published_ is
  // stored with release after the slot (pairs with for_each_record).
  fiber** chunks_ = nullptr;  // [max_chunks], allocated with the first chunk
  std::atomic<std::size_t> published_{0};
};

}  // namespace weft::detail
