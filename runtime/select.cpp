// select.cpp: the select algorithm (weft/select.hpp).
//
// Purpose
//   Perform exactly one of several channel operations, choosing uniformly
//   among those that can proceed, or block on all of them at once.
//
// Design (Go's selectgo, with a cheaper fast path)
//   1. Shuffle the cases (the poll order).
//   2. Pass 1: in poll order, look at each channel's readiness hint without
//      its lock; lock only a channel that looks ready and try the case
//      there. The first case that proceeds wins: one lock, as for a plain
//      send or receive. Go instead locks every channel of the select first.
//   3. Nothing proceeded. With a default and a single channel case, the
//      hint (or the locked attempt) was an exact observation: take the
//      default. With several, lock them all (step 4) so "none is ready" is
//      observed at one instant, as in Go.
//   4. Lock every distinct channel in address order (one global order: no
//      deadlock between selects) and try the cases again in poll order.
//   5. Still nothing (and no default): enqueue one node per case, all
//      pointing at one `done` word, and park with a release that unlocks
//      every channel. A waker claims the select by CAS on `done`
//      (chan_core.hpp claim()); wakers that lose drop their node.
//   6. Woken: `done` names the winner; lock each other channel in turn and
//      unlink the nodes still queued there.
//   Rejected: polling in a random rotation instead of a shuffle (with some
//   cases not ready the choice among the ready ones is not uniform).
//
// Invariants
//   S1  A node of this select is claimed by at most one waker (the CAS),
//       and a claimed node is never relinked (chan_core.hpp C6).
//   S2  When an unwound select leaves, it has taken every channel's lock
//       after its release ran, so no waker still holds (or will take) one
//       of its nodes (chan_core.hpp C5).
//   S3  The park release touches the selecting party's frame only before
//       its first unlock: from then on a waker may resume the party, which
//       may return before the release has unlocked the rest.
//
// Lock order: channel locks in increasing address order (chan_core.hpp).

#include "weft/select.hpp"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "weft/detail/perturb.hpp"

namespace weft::detail {
namespace {

void shuffle(std::uint32_t* order, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);
  // Fisher-Yates; each draw maps the high 32 bits of an LCG step onto
  // [0, k] by multiply-shift (bias below 2^-32 · n).
  std::uint64_t x = chan_rand();
  for (std::size_t k = n - 1; k > 0; --k) {
    const std::size_t j = static_cast<std::size_t>(((x >> 32) * (k + 1)) >> 32);
    std::swap(order[k], order[j]);
    x = x * 6364136223846793005ull + 1442695040888963407ull;
  }
}

bool looks_ready(const case_ref& c) noexcept {
  return c.is_send ? c.ch->send_ready_hint() : c.ch->recv_ready_hint();
}

// distinct_channels: the non-nil channels of the cases, deduplicated, in
// address order. Returns how many.
std::size_t distinct_channels(const case_ref* cs, std::size_t n, chan_base** out) noexcept {
  std::size_t m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    chan_base* ch = cs[i].ch;
    if (ch == nullptr) continue;
    std::size_t pos = 0;
    while (pos < m && out[pos] < ch) ++pos;
    if (pos < m && out[pos] == ch) continue;
    for (std::size_t k = m; k > pos; --k) out[k] = out[k - 1];
    out[pos] = ch;
    ++m;
  }
  return m;
}

struct lockset {
  chan_base** locks;
  std::size_t m;
};

// unlock_all: the park release of a blocked select (S3): copy the list out
// of the selecting party's frame first, since the first unlock lets a waker
// resume that party, which may leave the frame before the last unlock.
// Not analysed (thread_safety.hpp): it releases a run-time set of locks.
void unlock_all(void* arg) noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
  const auto* ls = static_cast<const lockset*>(arg);
  const std::size_t m = ls->m;
  auto** copy = static_cast<chan_base**>(__builtin_alloca(m * sizeof(chan_base*)));
  for (std::size_t i = 0; i < m; ++i) copy[i] = ls->locks[i];
  for (std::size_t i = 0; i < m; ++i) {
    copy[i]->lock.unlock();
    perturb(perturb_site::select_locks);  // a waker may claim the select between two unlocks
  }
}

// dequeue: unlink this select's nodes still queued, one channel at a time.
// `skip_alone` names the winning case: a channel on which it is the only
// case needs no visit (its waker unlinked it and is done with it). An
// unwound select passes n, visiting every channel (S2).
void dequeue(const case_ref* cs, std::size_t n, chan_base* const* locks, std::size_t m,
             chan_node* nodes, std::size_t skip_alone) noexcept {
  for (std::size_t l = 0; l < m; ++l) {
    chan_base* ch = locks[l];
    bool visit = false;
    for (std::size_t i = 0; i < n && !visit; ++i) visit = cs[i].ch == ch && i != skip_alone;
    if (!visit) continue;
    perturb(perturb_site::select_locks);
    chan_lock(ch->lock);
    for (std::size_t i = 0; i < n; ++i) {
      if (cs[i].ch != ch || !nodes[i].queued) continue;
      (cs[i].is_send ? ch->sendq : ch->recvq).remove(&nodes[i]);
    }
    ch->lock.unlock();
  }
}

// block: step 5 and 6. Called with every channel in locks[] held.
select_outcome block(case_ref* cs, std::size_t n, const select_scratch& s, std::size_t m) {
  // Pass 2 tried every case under the locks: each attempt drained the
  // opposite queue of claimed nodes (C1) and found the buffer empty (a
  // receive, C2) or full (a send, C3).
  for (std::size_t i = 0; i < n; ++i) {
    const chan_base* ch = cs[i].ch;
    if (ch == nullptr) continue;
    WEFT_DCHECK((cs[i].is_send ? ch->recvq : ch->sendq).empty(), "chan_core C1");
    WEFT_DCHECK(ch->count.load(std::memory_order_relaxed) == (cs[i].is_send ? ch->cap : 0),
                "chan_core C2/C3");
  }
  waiter w;
  w.prepare();
  std::atomic<std::uint32_t> done{0};
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint32_t i = s.order[k];
    chan_base* ch = cs[i].ch;
    if (ch == nullptr) continue;
    chan_node& node = s.nodes[i];
    node.w = &w;
    node.slot = cs[i].slot;
    node.sel = &done;
    node.case_id = i + 1;
    (cs[i].is_send ? ch->sendq : ch->recvq).push(&node);
  }
  lockset ls{s.locks, m};
  try {
    park(w, &unlock_all, &ls, wait_reason::select, &done, static_cast<std::int64_t>(n));
  } catch (...) {
    dequeue(cs, n, s.locks, m, s.nodes, n);
    throw;
  }
  // Only a claimer unparks us, after its CAS; the unpark orders its writes.
  const std::uint32_t won = done.load(std::memory_order_relaxed);
  if (won == 0 || won > n) {
    std::fputs("weft: internal error: select woken without a winner\n", stderr);
    std::abort();
  }
  const std::size_t winner = won - 1;
  dequeue(cs, n, s.locks, m, s.nodes, winner);
  return {winner, s.nodes[winner].closed};
}

}  // namespace

// Not analysed (thread_safety.hpp): pass 2 holds a run-time set of channel
// locks, which the analysis cannot name. Pass 1 takes one lock at a time
// the way chan.hpp does, which is analysed there.
select_outcome select_impl(case_ref* cs, std::size_t n, bool has_default,
                           const select_scratch& s) WEFT_NO_THREAD_SAFETY_ANALYSIS {
  shuffle(s.order, n);

  // Pass 1: one channel at a time.
  std::size_t live = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint32_t i = s.order[k];
    const case_ref& c = cs[i];
    if (c.ch == nullptr) continue;
    ++live;
    if (!looks_ready(c)) continue;
    chan_lock(c.ch->lock);
    chan_node* wake = nullptr;
    const op_result r = c.attempt(c.ch, c.slot, wake);
    if (r == op_result::blocked) {
      c.ch->lock.unlock();
      continue;
    }
    unlock_and_wake(c.ch->lock, wake);  // the attempt proceeded: wake its partner
    return {i, r == op_result::closed};
  }
  if (live == 0) {
    if (has_default) return {n, false};
    park_forever(wait_reason::select_forever);
  }
  if (has_default && live == 1) return {n, false};
  perturb(perturb_site::select_locks);  // pass 1's observations go stale

  // Pass 2: all channels locked at once.
  const std::size_t m = distinct_channels(cs, n, s.locks);
  for (std::size_t l = 0; l < m; ++l) chan_lock(s.locks[l]->lock);
  for (std::size_t k = 0; k < n; ++k) {
    const std::uint32_t i = s.order[k];
    const case_ref& c = cs[i];
    if (c.ch == nullptr) continue;
    chan_node* wake = nullptr;
    const op_result r = c.attempt(c.ch, c.slot, wake);
    if (r == op_result::blocked) continue;
    for (std::size_t l = 0; l < m; ++l) {
      if (s.locks[l] != c.ch) s.locks[l]->lock.unlock();
    }
    unlock_and_wake(c.ch->lock, wake);  // the attempt proceeded: wake its partner
    return {i, r == op_result::closed};
  }
  if (has_default) {
    for (std::size_t l = 0; l < m; ++l) s.locks[l]->lock.unlock();
    return {n, false};
  }
  return block(cs, n, s, m);
}

}  // namespace weft::detail
