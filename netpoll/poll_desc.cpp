// poll_desc.cpp: the table of descriptor records and their lifecycle.
//
// Purpose
//   Give every descriptor weft waits on a record that outlives it: a
//   reference-counted incarnation, closed exactly once, whose OS descriptor
//   is closed only when no operation uses it any more.
//
// Design
//   * Records are indexed by fd in a two-level table (64Ki chunk pointers,
//     512 records per chunk). A chunk is installed by CAS and never freed
//     or moved, so a record's address is stable forever (conn holds it) and
//     the poller finds the record of an event with one acquire load. This
//     is the "grows without moving elements" property of
//     tbb::concurrent_vector, minus its caveat that a concurrent reader may
//     see an element whose construction is still in progress (see
//     fiber_pool.hpp's published_). Rejected: Go's free-list pollcache (a
//     lock per open; the fd already is a unique index).
//   * A record is one cache line (what every operation touches); deadline
//     timers, lock queues and the count of waiting threads live in a cold
//     part allocated the first time a descriptor needs one. At 10,000
//     connections this halves the cache lines per message and saves 2 MB.
//   * state = generation | active | closing | borrowed | hooked | refs,
//     changed by CAS. Every incarnation gets a new generation; epoll's user data
//     carries it (netpoll.cpp), so an event for a closed descriptor whose
//     number was reused is dropped. The owner of a conn or listener holds
//     one reference; each operation holds another while it runs. close()
//     marks the record closing (no new operation starts), wakes the waiters
//     (netpoll_closing) and drops the owner's reference; the last reference
//     out closes the descriptor. A borrowed record (wait_readable on a
//     descriptor weft does not own) has no owner: its last borrower
//     deregisters it and leaves the descriptor open.
//   * Direction locks (Go's fdMutex read and write locks): a 16-bit word in
//     the hot line, waiters queued FIFO in the cold part and handed the lock
//     directly (as weft::mutex does).
//   * Hooked records (the libc hooks, hooks/): a borrowed record that stays
//     registered with epoll for the descriptor's life, so a fiber blocking
//     in read() again and again on one socket costs no epoll_ctl per wait.
//     The hooked bit holds a reference of its own, dropped by pd_revoke when
//     the hooks see the descriptor closed or replaced (close, dup2, dup3) or
//     its number handed out again (a descriptor they did not see closed).
//     Rejected: a registration per wait, as wait_readable does (two more
//     system calls per blocking read); EPOLLONESHOT re-arming (one more).
//
// Invariants
//   N1  A chunk of the table and a cold part are never freed; the chunk of
//       fd N exists before N is registered, so every event's record is a
//       valid object.
//   N2  A record is free (no pd_active) or active; the generation changes
//       only when a free record is claimed. Only the holder of a reference
//       (or the claimant) touches fd-related fields.
//   N3  The party that drops the last reference of a closing record marks it
//       free and then (owned) closes the descriptor or (borrowed) removes it
//       from epoll first; nobody can claim the number before the kernel
//       hands it out again, which is after the close.
//   N7  A direction lock's waiters bit is set iff its queue is non-empty,
//       both changed under poll_cold::lk; an unlock with waiters keeps the
//       lock held and hands it to the first, woken in chan_core.hpp C5's
//       order (sync.cpp Y4: a plain thread wakes it before it releases
//       poll_cold::lk).
//   N8  pd_hooked is set only on a borrowed record, and only together with
//       one reference it owns; it is cleared only when the record is freed
//       (finalize), and its reference is dropped only by the pd_revoke that
//       marked the record closing.
//
// Lock order: direction lock < poll_cold::lk < timers lock (runtime/timers.hpp).

#include "netpoll/poll_desc.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <system_error>

#include "netpoll/netpoll.hpp"
#include "runtime/sys.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/runtime.hpp"

namespace weft::detail {
namespace {

constexpr unsigned chunk_bits = 9;
constexpr std::size_t chunk_records = std::size_t{1} << chunk_bits;
constexpr std::size_t max_chunks = std::size_t{1} << 16;
constexpr std::uint16_t lock_held = 1;
constexpr std::uint16_t lock_waiters = 2;

// N1: chunk pointers, installed by CAS (release), read with acquire.
std::atomic<poll_desc*> g_chunks[max_chunks];

poll_desc* record_of(int fd) {
  if (fd < 0) throw std::system_error(EBADF, std::generic_category(), "weft::net");
  const std::size_t c = static_cast<std::size_t>(fd) >> chunk_bits;
  if (c >= max_chunks) throw std::system_error(EMFILE, std::generic_category(), "weft::net");
  poll_desc* chunk = g_chunks[c].load(std::memory_order_acquire);  // pairs with the CAS below
  if (chunk == nullptr) {
    auto* fresh = new poll_desc[chunk_records];
    for (std::size_t i = 0; i < chunk_records; ++i) {
      fresh[i].fd = static_cast<int>((c << chunk_bits) + i);
    }
    if (g_chunks[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
      chunk = fresh;
    } else {
      delete[] fresh;  // another thread installed one first
    }
  }
  return &chunk[static_cast<std::size_t>(fd) & (chunk_records - 1)];
}

std::uint32_t next_gen(std::uint64_t s) noexcept {
  const std::uint32_t g = static_cast<std::uint32_t>(s >> 32) + 1;
  return g == 0 ? 1 : g;  // 0 would make fd 0's tag collide with the eventfd's
}

// reset: fresh incarnation; the caller just claimed the record (N2).
void reset(poll_desc& pd) noexcept {
  for (int d = 0; d < 2; ++d) {
    pd.slot[d].store(slot_empty, std::memory_order_relaxed);
    pd.deadline[d].store(no_deadline, std::memory_order_relaxed);
  }
  pd.reg_epoch.store(0, std::memory_order_relaxed);
  pd.read_drained = false;
  pd.hup.store(false, std::memory_order_relaxed);
  if (poll_cold* c = pd.cold.load(std::memory_order_acquire)) {
    c->timer_epoch[0].store(0, std::memory_order_relaxed);
    c->timer_epoch[1].store(0, std::memory_order_relaxed);
  }
}

// finalize: N3. `s` is the state with closing set; the caller holds the
// last reference (a borrowed record's last borrower, pd_release's first
// branch) or none is left (an owned record, or a borrowed one revoked
// while in use: pd_revoke set closing and the last release finalizes).
void finalize(poll_desc& pd, std::uint64_t s) noexcept {
  const bool borrowed = (s & pd_borrowed) != 0;
  WEFT_DCHECK((s & pd_refs_mask) <= (borrowed ? 1u : 0u),
              "poll_desc N3: finalized by the last reference");
  netpoll_forget(pd, borrowed);
  pd.slot[0].store(slot_empty, std::memory_order_relaxed);
  pd.slot[1].store(slot_empty, std::memory_order_relaxed);
  // release: the next claimant's CAS (acquire) sees the fields above.
  pd.state.store(s & pd_gen_mask, std::memory_order_release);
  if (!borrowed) sys_close(pd.fd);
}

}  // namespace

[[noreturn]] void pd_fatal(const char* msg, int fd) noexcept {
  std::fprintf(stderr, "weft: %s (descriptor %d)\n", msg, fd);
  std::abort();
}

poll_desc* pd_lookup(int fd) noexcept {
  const std::size_t c = static_cast<std::size_t>(static_cast<unsigned>(fd)) >> chunk_bits;
  if (c >= max_chunks) return nullptr;
  poll_desc* chunk = g_chunks[c].load(std::memory_order_acquire);  // N1; pairs with record_of
  return chunk == nullptr ? nullptr : &chunk[static_cast<std::size_t>(fd) & (chunk_records - 1)];
}

poll_cold& pd_cold(poll_desc& pd) {
  poll_cold* c = pd.cold.load(std::memory_order_acquire);  // pairs with the CAS below
  if (c != nullptr) return *c;
  auto* fresh = new poll_cold();
  if (pd.cold.compare_exchange_strong(c, fresh, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
    return *fresh;
  }
  delete fresh;
  return *c;
}

// ---- lifecycle ----

poll_desc* pd_open(int fd, std::uint32_t* gen) {
  poll_desc* pd = record_of(fd);
  std::uint64_t s = pd->state.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & pd_active) != 0) {
      // The kernel just handed out `fd`, so a borrowed record of that
      // number is stale (closed behind the hooks' back): retire it and wait
      // for its last operation to leave.
      if ((s & pd_borrowed) != 0) {
        pd_revoke(fd);
        weft::yield();
        s = pd->state.load(std::memory_order_relaxed);
        continue;
      }
      pd_fatal(
          "a new descriptor's record is still in use: was a weft::net descriptor closed "
          "with ::close() instead of its close()?",
          fd);
    }
    const std::uint32_t g = next_gen(s);
    if (pd->state.compare_exchange_weak(s, (std::uint64_t{g} << 32) | pd_active | 1,
                                        std::memory_order_acquire)) {
      *gen = g;
      break;
    }
  }
  // Nobody else can reach an owned incarnation before pd_open returns.
  reset(*pd);
  return pd;
}

namespace {

// borrow: pd_borrow, or with `hook` pd_hook: a free record is claimed as a
// borrowed incarnation (hooked: plus the hooked reference, N8), closed to
// others until it is reset, so a second borrower cannot register or wait
// before the reset; an active one gains a reference (a borrowed one
// becoming hooked gains the hooked reference too).
poll_desc* borrow(int fd, std::uint32_t* gen, bool hook) {
  poll_desc* pd = record_of(fd);
  const std::uint64_t claim = hook ? pd_hooked | 2 : 1;
  std::uint64_t s = pd->state.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & pd_active) == 0) {
      const std::uint32_t g = next_gen(s);
      if (pd->state.compare_exchange_weak(
              s, (std::uint64_t{g} << 32) | pd_active | pd_closing_bit | pd_borrowed | claim,
              std::memory_order_acquire)) {
        reset(*pd);
        pd->state.fetch_and(~pd_closing_bit,
                            std::memory_order_release);  // pairs with the CAS below
        *gen = g;
        return pd;
      }
      continue;
    }
    if ((s & pd_closing_bit) != 0) {
      // Being closed, deregistered or reset by another party, which takes
      // at most one system call: let it finish, then look again.
      weft::yield();
      s = pd->state.load(std::memory_order_relaxed);
      continue;
    }
    if ((s & pd_refs_mask) >= pd_refs_mask - 1)
      pd_fatal("too many operations on one descriptor", fd);
    const std::uint64_t want =
        hook && (s & (pd_borrowed | pd_hooked)) == pd_borrowed ? (s | pd_hooked) + 2 : s + 1;
    if (pd->state.compare_exchange_weak(s, want, std::memory_order_acquire)) {
      *gen = static_cast<std::uint32_t>(s >> 32);
      return pd;
    }
  }
}

}  // namespace

poll_desc* pd_borrow(int fd, std::uint32_t* gen) { return borrow(fd, gen, false); }

poll_desc* pd_hook(int fd, std::uint32_t* gen) { return borrow(fd, gen, true); }

bool pd_revoke(int fd) noexcept {
  poll_desc* pd = pd_lookup(fd);
  if (pd == nullptr) return false;
  std::uint64_t s = pd->state.load(std::memory_order_relaxed);
  for (;;) {
    if ((s & (pd_active | pd_closing_bit | pd_borrowed)) != (pd_active | pd_borrowed)) return false;
    // seq_cst: as pd_close, the store half of the Dekker pair with a
    // waiter's announcement (netpoll.cpp N5).
    if (pd->state.compare_exchange_weak(s, s | pd_closing_bit, std::memory_order_seq_cst)) break;
  }
  netpoll_closing(*pd);
  if ((s & pd_hooked) != 0) pd_release(*pd);  // N8; the last one out deregisters it
  return true;
}

bool pd_acquire(poll_desc& pd, std::uint32_t gen) noexcept {
  std::uint64_t s = pd.state.load(std::memory_order_relaxed);
  for (;;) {
    if (static_cast<std::uint32_t>(s >> 32) != gen ||
        (s & (pd_active | pd_closing_bit)) != pd_active) {
      return false;
    }
    if ((s & pd_refs_mask) == pd_refs_mask)
      pd_fatal("too many operations on one descriptor", pd.fd);
    // acquire: pairs with the release in pd_release/finalize.
    if (pd.state.compare_exchange_weak(s, s + 1, std::memory_order_acquire)) return true;
  }
}

void pd_release(poll_desc& pd) noexcept {
  std::uint64_t s = pd.state.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t refs = s & pd_refs_mask;
    if (refs == 1 && (s & (pd_borrowed | pd_closing_bit | pd_hooked)) == pd_borrowed) {
      // Last borrower: close the record to newcomers, then deregister.
      if (pd.state.compare_exchange_weak(s, s | pd_closing_bit, std::memory_order_acq_rel)) {
        finalize(pd, s | pd_closing_bit);
        return;
      }
      continue;
    }
    // acq_rel: the last one out sees every other holder's writes.
    if (pd.state.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel)) {
      if (refs == 1 && (s & pd_closing_bit) != 0) finalize(pd, s - 1);
      return;
    }
  }
}

void pd_lock(poll_desc& pd, int dir) {
  std::atomic<std::uint16_t>& word = pd.lock[dir];
  std::uint16_t v = 0;
  // acquire: pairs with the release in pd_unlock.
  if (word.compare_exchange_strong(v, lock_held, std::memory_order_acquire)) return;
  // Contended (Go's fdMutex queues here too): FIFO hand-off, as weft::mutex.
  poll_cold& c = pd_cold(pd);
  sync_node n;
  n.w.prepare();
  c.lk.lock();
  v = word.load(std::memory_order_relaxed);
  for (;;) {
    if (v == 0) {
      if (word.compare_exchange_weak(v, lock_held, std::memory_order_acquire)) {
        c.lk.unlock();
        return;
      }
    } else if (v == (lock_held | lock_waiters) ||
               word.compare_exchange_weak(v, lock_held | lock_waiters, std::memory_order_relaxed)) {
      break;
    }
  }
  c.waiters[dir].push(&n);
  WEFT_DCHECK(word.load(std::memory_order_relaxed) == (lock_held | lock_waiters), "poll_desc N7");
  try {
    park(n.w, c.lk, dir == dir_read ? wait_reason::netpoll_read : wait_reason::netpoll_write, &pd);
  } catch (...) {
    // Unwound at shutdown: leave the queue, or pass on a lock handed to us.
    c.lk.lock();
    const bool queued = n.queued;
    if (queued) {
      c.waiters[dir].remove(&n);
      if (c.waiters[dir].empty()) word.store(lock_held, std::memory_order_relaxed);
    }
    c.lk.unlock();
    if (!queued) pd_unlock(pd, dir);
    throw;
  }
  // pd_unlock handed the lock to us (the word stayed held).
}

bool pd_trylock(poll_desc& pd, int dir) noexcept {
  std::uint16_t v = 0;
  // acquire: pairs with the release in pd_unlock.
  return pd.lock[dir].compare_exchange_strong(v, lock_held, std::memory_order_acquire);
}

void pd_unlock(poll_desc& pd, int dir) noexcept {
  std::atomic<std::uint16_t>& word = pd.lock[dir];
  std::uint16_t v = lock_held;
  if (word.compare_exchange_strong(v, 0, std::memory_order_release)) return;
  poll_cold& c = *pd.cold.load(std::memory_order_acquire);  // waiters imply a cold part
  c.lk.lock();
  WEFT_DCHECK(word.load(std::memory_order_relaxed) == (lock_held | lock_waiters), "poll_desc N7");
  sync_node* n = c.waiters[dir].pop();
  if (n == nullptr) {
    word.store(0, std::memory_order_release);  // the last waiter left while unwinding
    c.lk.unlock();
    return;
  }
  // Hand over: stay held; release pairs with the new holder's resumption.
  word.store(c.waiters[dir].empty() ? lock_held : (lock_held | lock_waiters),
             std::memory_order_release);
  unlock_and_unpark(c.lk, n);  // N7
}

bool pd_close(poll_desc& pd, std::uint32_t gen) noexcept {
  std::uint64_t s = pd.state.load(std::memory_order_relaxed);
  for (;;) {
    if (static_cast<std::uint32_t>(s >> 32) != gen ||
        (s & (pd_active | pd_closing_bit | pd_borrowed)) != pd_active) {
      return false;
    }
    // seq_cst: the store half of the Dekker pair with a waiter's
    // announcement (netpoll.cpp N5).
    if (pd.state.compare_exchange_weak(s, s | pd_closing_bit, std::memory_order_seq_cst)) break;
  }
  netpoll_closing(pd);  // N6 (timers) and the waiters
  poll_cold* c = pd.cold.load(std::memory_order_acquire);
  if (c != nullptr && c->thread_waiters.load(std::memory_order_seq_cst) != 0) {
    ::shutdown(pd.fd, SHUT_RDWR);
  }
  pd_release(pd);  // the owner's reference
  return true;
}

}  // namespace weft::detail
