// park.cpp: park/unpark for fibers and plain OS threads (weft/detail/park.hpp).

#include "weft/detail/park.hpp"

#include "runtime/debug_internal.hpp"
#include "runtime/futex.hpp"
#include "runtime/machine.hpp"
#include "runtime/processor.hpp"
#include "runtime/sched_ops.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {

void waiter::prepare() noexcept {
  machine* m = current_m();
  fiber_ = (m != nullptr && m->curg != nullptr && !m->in_blocking) ? m->curg : nullptr;
  woken_.store(0, std::memory_order_relaxed);
  if (m == nullptr) note_foreign_call();  // a plain thread about to wait: a party
}

void park(waiter& w, void (*release)(void*), void* arg, wait_reason why, const void* obj,
          std::int64_t note) {
  if (w.fiber_ != nullptr) {
    park_current({release, arg}, why, obj, note);
    return;
  }
  release(arg);
  // pairs with the release store in unpark()
  while (w.woken_.load(std::memory_order_acquire) == 0) futex_wait(w.woken_, 0);
}

std::atomic<std::uint32_t> g_preempt_requests{0};

void preempt_slow() noexcept {
  if (perturb_on()) perturb_yield_point();
  machine* m = current_m();
  if (m == nullptr) {
    note_foreign_call();  // a plain thread's entry check (weft/detail/park.hpp)
    return;
  }
  if (m->curg == nullptr || m->in_blocking || m->p == nullptr) return;
  processor* p = m->p;
  if (!p->preempt.load(std::memory_order_relaxed)) return;
  // exchange: sysmon may flag it again concurrently; one clear per flag.
  if (!p->preempt.exchange(false, std::memory_order_relaxed)) return;
  g_preempt_requests.fetch_sub(1, std::memory_order_relaxed);
  try {
    yield_current();
  } catch (...) {
    // Shutdown: the unwind resurfaces at this fiber's next park.
  }
}

void unpark(waiter& w) noexcept {
  if (fiber* f = w.fiber_) {
    WEFT_DCHECK(w.lock_ == nullptr || w.lock_->is_locked() || current_m() != nullptr,
                "C5: a plain thread wakes a fiber before it releases the lock the fiber parked "
                "under");
    ready(f);
    return;
  }
#if WEFT_DEBUG_CHECKS
  WEFT_CHECK(w.woken_.exchange(1, std::memory_order_release) == 0,
             "park.hpp: a thread waiter is unparked once per park");
#else
  w.woken_.store(1, std::memory_order_release);
#endif
  // The waiter may already be gone once it sees 1; waking a futex on its
  // (still mapped) stack address is harmless.
  futex_wake(w.woken_);
}

}  // namespace weft::detail
