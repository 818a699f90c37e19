// group.cpp: weft::group (weft/group.hpp), Go's errgroup.
//
// The state is shared between the group object and its fibers (each task
// holds a reference), so a fiber finishing after the group object is gone
// (only possible at shutdown, when waiting is cut short) touches live
// memory. `first` is guarded by `lk`; the wait_group orders each fiber's
// writes before wait() returns.

#include "weft/group.hpp"

#include "runtime/sched_ops.hpp"
#include "weft/sync.hpp"

namespace weft {
namespace detail {

struct group_state {
  wait_group wg;
  context ctx;
  spinlock lk;
  std::exception_ptr first WEFT_GUARDED_BY(lk);
};

void group_fail(group_state& s, std::exception_ptr e) noexcept {
  s.lk.lock();
  if (!s.first) s.first = std::move(e);
  s.lk.unlock();
  s.ctx.cancel();
}

void group_done(group_state& s) noexcept { s.wg.done(); }

bool is_shutdown_unwind() noexcept {
  try {
    throw;
  } catch (const fiber_unwind&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace detail

group::group() : group(background()) {}

group::group(const context& parent) : st_(std::make_shared<detail::group_state>()) {
  st_->ctx = with_cancel(parent);
}

group::~group() {
  st_->ctx.cancel();
  try {
    st_->wg.wait();
  } catch (...) {
    // The runtime is shutting down and unwinds this fiber: its fibers are
    // being unwound too, and the shared state outlives them.
  }
}

const context& group::ctx() const noexcept { return st_->ctx; }

void group::add_one() { st_->wg.add(1); }

void group::wait() {
  st_->wg.wait();
  st_->ctx.cancel();
  st_->lk.lock();
  std::exception_ptr e = st_->first;
  st_->lk.unlock();
  if (e) std::rethrow_exception(e);
}

}  // namespace weft
