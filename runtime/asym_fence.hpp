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
// mfence costs ~8.5 ns; membarrier with a busy peer ~0.34 us.
//
// Where membarrier is unavailable (old kernels, seccomp), both sides fall
// back to full fences.

#include <atomic>

#include "runtime/futex.hpp"

namespace weft::detail {

// True once membarrier registration succeeded. Written once by
// asym_fence_init() before any runtime thread starts; read-only after.
extern bool g_membarrier_ok;

void asym_fence_init() noexcept;

// asym_light: the hot side. Orders this thread's earlier stores before its
// later loads as seen by a thread that executes asym_heavy().
inline void asym_light() noexcept {
  if (g_membarrier_ok) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    full_fence();
  }
}

// asym_heavy: the rare side. After it returns, every store that any other
// thread made before its last asym_light() is visible to us, and our own
// earlier stores are visible to every thread.
void asym_heavy() noexcept;

}  // namespace weft::detail
