#pragma once
// asym_fence.hpp: asymmetric memory barriers.
//
// Several handshakes in the scheduler are Dekker-shaped: side A stores X
// then loads Y, side B stores Y then loads X, and at least one must see the
// other's store. That needs a StoreLoad barrier on both sides. One side of
// each handshake is hot (a worker touching its own run queue, a submitter
// readying a fiber) and the other is rare (a thief, a worker going idle).
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) lets the rare side execute a
// barrier on every CPU running one of our threads, so the hot side needs
// only a compiler barrier. Measured on the 2-vCPU dev VM: a locked RMW or
// mfence costs ~8.5 ns; membarrier with a busy peer ~0.34 us on a quiet
// host, but 7-10 us on the same VM when the host delivers IPIs slowly (a
// steal then stalls the thief and, through the run queue's thief flag, its
// victim: select at 2 workers went from 0.3 us to 3 us).
//
// Modes (g_asym_mode), one way only: asym -> switching -> symmetric.
//   asym       light: compiler barrier; heavy: full fence + membarrier.
//   switching  light: full fence;       heavy: full fence + membarrier.
//   symmetric  light: full fence;       heavy: full fence.
// Where membarrier is unavailable (old kernels, seccomp) the mode is
// symmetric from the start. asym_heavy times its membarrier calls; when
// their running average exceeds slow_membarrier_ns, the caller stores
// `switching`, issues one more membarrier and stores `symmetric`.
// Why the switch is safe: after that membarrier every thread has executed a
// full barrier at some point after `switching` was stored, so a light
// operation either read `asym` and its store was made before that barrier
// (visible to every heavy operation that starts after the membarrier
// returns), or it reads `switching`/`symmetric` and fences itself. A heavy
// operation that reads `symmetric` (acquire; stored with release after the
// membarrier returned) therefore pairs only with fenced or already-visible
// light operations; one that reads `switching` still uses membarrier.

#include <atomic>

#include "runtime/futex.hpp"

namespace weft::detail {

enum : int { asym_mode_asym = 0, asym_mode_switching = 1, asym_mode_symmetric = 2 };

// Written by asym_fence_init() before any runtime thread starts, then only
// by asym_heavy's one-way switch (see above). Light side: relaxed loads.
extern std::atomic<int> g_asym_mode;

void asym_fence_init() noexcept;

// asym_light: the hot side. Orders this thread's earlier stores before its
// later loads as seen by a thread that executes asym_heavy().
inline void asym_light() noexcept {
  if (g_asym_mode.load(std::memory_order_relaxed) == asym_mode_asym) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    full_fence();
  }
}

// asym_heavy: the rare side. After it returns, every store that any other
// thread made before its last asym_light() is visible to us, and our own
// earlier stores are visible to every thread.
void asym_heavy() noexcept;

// asym_force_symmetric: switch now, as a slow membarrier would (tests).
void asym_force_symmetric() noexcept;
bool asym_symmetric_for_test() noexcept;

// asym_symmetric: true once the light side fences (statistics, tests).
inline bool asym_symmetric() noexcept {
  return g_asym_mode.load(std::memory_order_relaxed) != asym_mode_asym;
}

}  // namespace weft::detail
