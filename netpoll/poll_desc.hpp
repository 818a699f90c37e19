#pragma once
// poll_desc.hpp: the netpoller's record of one descriptor and its
// lifecycle (poll_desc.cpp). Waiting on a record is netpoll.hpp's.

#include <atomic>
#include <cstdint>

#include "runtime/timer_heap.hpp"
#include "weft/detail/spinlock.hpp"
#include "weft/sync.hpp"  // node_queue

namespace weft::detail {

inline constexpr int dir_read = 0;
inline constexpr int dir_write = 1;
inline constexpr std::int64_t no_deadline = INT64_MAX;

// poll_cold: the rarely used part of a record, allocated on first use
// (a deadline, a contended direction lock, a plain thread waiting) and then
// kept for every later incarnation of the record (N1).
struct poll_cold {
  spinlock lk;
  // Fibers and threads queued for a direction lock (poll_desc::lock).
  node_queue waiters[2] WEFT_GUARDED_BY(lk);
  // Plain threads blocked in poll(2) on this descriptor; close() shuts the
  // socket down when non-zero so poll(2) returns. seq_cst (Dekker with
  // pd_close).
  std::atomic<std::int32_t> thread_waiters{0};
  // The run (epoch) whose timer heap holds dl_timer[d] (or that decided
  // none was needed). Written under the timers lock; read relaxed (N6).
  std::atomic<std::uint32_t> timer_epoch[2] = {};
  // Deadline timers; guarded by the timers lock (runtime/timers.hpp).
  timer dl_timer[2];
};

// poll_desc: the netpoller's record of one descriptor (Go's pollDesc): one
// cache line, everything an operation touches. Type-stable: records live in
// a table indexed by fd whose chunks are never freed (N1 in netpoll.cpp),
// so a stale pointer or a stale epoll event always lands on a valid record
// and is told apart by the generation.
struct alignas(64) poll_desc {
  // state: generation (high 32 bits) | active | closing | borrowed | hooked
  // | refs.
  // Changed by CAS only (N2, N3); seq_cst: close's store of `closing` and a
  // waiter's announcement in `slot` are the two halves of a Dekker pair.
  std::atomic<std::uint64_t> state{0};
  // Wait slots, one per direction: slot_empty, slot_ready, slot_wait or the
  // parked fiber (N4). CAS by the waiter, the poller, timers and close.
  std::atomic<std::uintptr_t> slot[2] = {};
  // Deadlines in steady_clock ns, no_deadline when none. Stored by
  // set_deadline (seq_cst: read by the waiter's recheck after it announces
  // itself in `slot`, the Dekker pair with the timer's unblock).
  std::atomic<std::int64_t> deadline[2] = {};
  // The cold part, or null; installed once by CAS (release/acquire).
  std::atomic<poll_cold*> cold{nullptr};
  // Direction locks (Go's fdMutex read/write locks): one operation per
  // direction at a time, so a slot has at most one waiter and concurrent
  // writes do not interleave. 0 free, 1 held, 3 held with waiters queued in
  // cold->waiters (the waiters bit changes only under cold->lk). Acquire on
  // lock, release on unlock.
  std::atomic<std::uint16_t> lock[2] = {};
  // The run (epoch) this descriptor is registered with epoll in; 0 = not
  // registered, reg_busy set while a registration is in progress. CAS by
  // the registering party; the final store is release, readers acquire.
  std::atomic<std::uint32_t> reg_epoch{0};
  int fd = -1;  // the index; constant once the chunk exists
  // The last read on this descriptor stopped short of the buffer: the
  // socket was drained, so the next read may wait for an edge before trying
  // (net.cpp). Only the holder of lock[dir_read] touches it.
  bool read_drained = false;
  // The peer hung up or the socket has an error (EPOLLRDHUP, EPOLLHUP,
  // EPOLLERR seen): end of stream or an error may be pending behind the
  // data, with no further edge to come, so reads never wait first. Set by
  // the dispatcher before it takes the slot (so a reader woken through the
  // slot sees it); cleared when the record is claimed.
  std::atomic<bool> hup{false};
};
static_assert(sizeof(poll_desc) == 64, "poll_desc is one cache line");

// ---- lifecycle (poll_desc.cpp) ----

// pd_open: claim the record of a descriptor the caller just created and
// owns; the returned generation identifies this incarnation. The record
// holds one reference for the owner, dropped by pd_close. Throws bad_alloc.
poll_desc* pd_open(int fd, std::uint32_t* gen);
// pd_borrow: a reference to the record of a descriptor weft does not own
// (wait_readable on a foreign descriptor), or of one it does (a conn's fd).
// Released by pd_release; the last borrower deregisters it.
poll_desc* pd_borrow(int fd, std::uint32_t* gen);
// pd_hook: a reference for one operation of the libc hooks (weft::hooks) on
// `fd`, whose record then stays registered until pd_revoke: a free record
// is claimed borrowed and hooked, a borrowed one becomes hooked, and the
// hooked bit holds one reference of its own (N8). Released by pd_release.
// Throws bad_alloc or system_error(EMFILE) for a descriptor past the table.
poll_desc* pd_hook(int fd, std::uint32_t* gen);
// pd_revoke: `fd` is being closed or replaced (close, dup2, dup3), or was
// just created and any record it has is stale: mark a borrowed record
// closing, wake its waiters and drop the hooked reference. Owned records
// (a weft::net conn's) are left alone. False when there was nothing to do.
bool pd_revoke(int fd) noexcept;
// pd_acquire: take a reference for one operation; false when the record was
// closed (or is a later incarnation). pd_release: drop it; the last
// reference out of a closed record closes the descriptor (N3).
bool pd_acquire(poll_desc& pd, std::uint32_t gen) noexcept;
void pd_release(poll_desc& pd) noexcept;
// pd_lock / pd_unlock: the direction lock (poll_desc::lock). pd_lock parks
// while another operation of that direction runs; it may throw (a fiber
// unwound at shutdown) holding nothing.
void pd_lock(poll_desc& pd, int dir);
// pd_trylock: the direction lock if it is free now.
bool pd_trylock(poll_desc& pd, int dir) noexcept;
void pd_unlock(poll_desc& pd, int dir) noexcept;
// pd_close: close the incarnation `gen`: no new operation starts, waiting
// ones wake with operation_canceled, and the descriptor is closed when the
// last operation leaves. False when it was already closed.
bool pd_close(poll_desc& pd, std::uint32_t gen) noexcept;

// pd_lookup: the record of `fd` if its chunk exists (the poller's
// dispatch: a registered descriptor's chunk always does, N1), else null.
poll_desc* pd_lookup(int fd) noexcept;
// pd_cold: the record's cold part, allocated on first use. Throws bad_alloc.
poll_cold& pd_cold(poll_desc& pd);
// pd_fatal: a broken invariant: print and abort.
[[noreturn]] void pd_fatal(const char* msg, int fd) noexcept;

// ---- state word layout ----
inline constexpr std::uint64_t pd_gen_mask = ~std::uint64_t{0} << 32;
inline constexpr std::uint64_t pd_refs_mask = (std::uint64_t{1} << 28) - 1;
inline constexpr std::uint64_t pd_hooked = std::uint64_t{1} << 28;
inline constexpr std::uint64_t pd_borrowed = std::uint64_t{1} << 29;
inline constexpr std::uint64_t pd_closing_bit = std::uint64_t{1} << 30;
inline constexpr std::uint64_t pd_active = std::uint64_t{1} << 31;
inline constexpr std::uintptr_t slot_empty = 0;
inline constexpr std::uintptr_t slot_ready = 1;
inline constexpr std::uintptr_t slot_wait = 2;

inline bool pd_closing(const poll_desc& pd) noexcept {
  return (pd.state.load(std::memory_order_seq_cst) & pd_closing_bit) != 0;
}

}  // namespace weft::detail
