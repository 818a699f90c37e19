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
// The scavenger (stack_pool.hpp has the scheme) gives back the pages of
// free records a burst left behind: records at the bottom of the global
// free list that no acquire reached for scavenge_ticks ticks are detached,
// the whole pages inside each run of adjacent ones are released
// (MADV_DONTNEED: they read as zeros again, which is a default-constructed
// free record, so dumps still read `state == free`), and they move to the
// cold list, used only when the warm list is empty, before a new chunk.
//
// Invariants
//   P1  A record is in exactly one of: a cache, the warm or cold free list,
//       the scavenger's detached batch, or live (state != free). Nobody
//       writes a record in the global lists or the batch, so the scavenger
//       may release its page.
//   P2  Chunks are freed only by destroy(), with no fiber alive.
//   P3  low_ <= free_.size(), under mu_; lows_ is the scavenger's alone
//       (sysmon's thread).
//   P4  A record's `seq` (fiber.hpp F5) never goes back, release or not:
//       a released page reads it as 0, so cold_seq_ (under mu_) is at least
//       every `seq` a released record had, raised before the record joins
//       the cold list, and pop_cold_locked moves a record's `seq` up to it
//       before the record's next incarnation. Otherwise a dump that read
//       `seq` == s before the release could read s again from the reused
//       record's second incarnation after it and take a torn read for one
//       fiber.
//
// Lock order: fiber_pool::mu_ is a leaf.

#include <atomic>
#include <cstdint>
#include <vector>

#include "runtime/fiber.hpp"
#include "runtime/locks.hpp"

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
  // Pages per chunk at the smallest page size (4 KiB); fewer with larger pages.
  static constexpr std::size_t chunk_pages = chunk_bytes / 4096;

  // acquire / acquire_shared: a record for a new fiber, its incarnation
  // begun (fiber.hpp F5): the caller writes the identity, then publishes it.
  fiber* acquire(fiber_cache& c);
  fiber* acquire_shared();  // no cache: foreign threads
  void release(fiber_cache& c, fiber* f) noexcept;
  void release_shared(fiber* f) noexcept;
  void flush(fiber_cache& c) noexcept;
  void destroy() noexcept;

  // scavenge: one scavenger tick (sysmon's thread only, P3). Returns the
  // bytes it released.
  std::size_t scavenge() noexcept;
  // scavenge_pending: warm free records above the floor exist (a hint).
  bool scavenge_pending() const noexcept {
    return free_count_.load(std::memory_order_relaxed) -
               cold_count_.load(std::memory_order_relaxed) >
           scavenge_floor;
  }
  std::uint64_t cold_free() const noexcept { return cold_count_.load(std::memory_order_relaxed); }

  static constexpr unsigned scavenge_ticks = 5;                 // as for stacks
  static constexpr std::size_t scavenge_floor = chunk_records;  // kept warm: the first chunk
  static constexpr std::size_t scavenge_min_batch = 4096;       // records per tick, at least
  // ... and at most (the sort and madvise run on sysmon's thread: a few ms).
  static constexpr std::size_t scavenge_max_batch = 65536;

  // for_each_resident_record: visit every record ever allocated (live or
  // free), but skip those whose `state` lies on a page that is not
  // resident (mincore): the scavenger released it, so the record is free,
  // and reading it would fault the page back in (on some kernels,
  // allocate it). For periodic diagnostics (the lock-cycle scan, dumps,
  // fibers_parked_now): a record that becomes live while the walk runs may
  // be missed, like a fiber started a moment later. Exact where no other
  // thread can take a record (the shutdown unwinder, runtime.cpp).
  template <class Fn>
  void for_each_resident_record(Fn&& fn) {
    const std::size_t n = published_.load(std::memory_order_acquire);  // pairs with grow_locked
    for (std::size_t i = 0; i < n; ++i) {
      fiber* chunk = chunks_[i];
      unsigned char resident[chunk_pages];
      if (!pages_resident(chunk, resident)) {
        for (unsigned j = 0; j < chunk_records; ++j) fn(&chunk[j]);
        continue;
      }
      for (unsigned j = 0; j < chunk_records; ++j) {
        const auto at =
            reinterpret_cast<const char*>(&chunk[j].state) - reinterpret_cast<const char*>(chunk);
        if ((resident[static_cast<std::size_t>(at) / page_] & 1) != 0) fn(&chunk[j]);
      }
    }
  }

  // live: records not in the free list or a cache. Exact only when caches
  // are flushed.
  std::uint64_t total() const noexcept { return total_.load(std::memory_order_relaxed); }
  std::uint64_t free_shared() const noexcept { return free_count_.load(std::memory_order_relaxed); }

 private:
  static constexpr unsigned batch = 64;

  void grow_locked() WEFT_REQUIRES(mu_);
  // pages_resident: mincore of a chunk into out[chunk_bytes / page_]; false if
  // mincore failed (then every record counts as resident).
  static bool pages_resident(fiber* chunk, unsigned char* out) noexcept;
  // pop_locked: a warm record, else a cold one, else a new chunk.
  fiber* pop_locked() WEFT_REQUIRES(mu_);
  fiber* pop_cold_locked() WEFT_REQUIRES(mu_);  // requires a cold record
  static void reset(fiber* f) noexcept;
  // retire: mark a record free (fiber.hpp F4: from dead, or from free for
  // one that never ran).
  static void retire(fiber* f) noexcept;

  // The page size: set under mu_ with the first chunk, before published_ is
  // stored (walkers read it after their acquire load of published_).
  std::size_t page_ = 4096;
  os_mutex mu_;
  std::vector<fiber*> free_ WEFT_GUARDED_BY(mu_);  // warm, LIFO at the back
  // Records whose pages the scavenger released, as runs of adjacent records
  // (a list of pointers would itself keep 8 bytes per record resident).
  struct cold_run {
    fiber* first;
    std::size_t count;
  };
  std::vector<cold_run> cold_ WEFT_GUARDED_BY(mu_);
  std::size_t low_ WEFT_GUARDED_BY(mu_) = 0;         // free_'s low-water mark this tick (P3)
  std::uint32_t cold_seq_ WEFT_GUARDED_BY(mu_) = 0;  // P4
  // The scavenger's (P3): the last scavenge_ticks low-water marks, a ring.
  std::size_t lows_[scavenge_ticks] WEFT_GUARDED_BY(mu_) = {};
  std::uint64_t lows_seen_ WEFT_GUARDED_BY(mu_) = 0;
  // Written under mu_; read lock-free only as statistics and hints.
  std::atomic<std::uint64_t> free_count_{0};  // free_.size() + cold_.size()
  std::atomic<std::uint64_t> cold_count_{0};
  std::atomic<std::uint64_t> total_{0};
  // chunks_[0, published_) are valid. Written under mu_; published_ is
  // stored with release after the slot (pairs with for_each_resident_record).
  fiber** chunks_ = nullptr;  // [max_chunks], allocated with the first chunk
  std::atomic<std::size_t> published_{0};
};

}  // namespace weft::detail
