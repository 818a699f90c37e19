// fd_hooks.cpp: the runtime's side of the libc hooks (fd_hooks.hpp).
// A hooked operation is net.cpp's pattern on a hooked record: a reference,
// the direction lock, then { system call; on EAGAIN netpoll_wait }.

#include "netpoll/fd_hooks.hpp"

#include <cerrno>
#include <new>
#include <system_error>

#include "netpoll/netpoll.hpp"
#include "runtime/timers.hpp"

namespace weft::detail {

bool hook_parkable() noexcept { return in_parkable_fiber(); }

std::int64_t hook_now() noexcept { return now_ns(); }

int hook_take_turn(int fd, int dir, bool queue, fd_turn& t) {
  std::uint32_t gen = 0;
  poll_desc* pd = nullptr;
  try {
    pd = pd_hook(fd, &gen);
  } catch (const std::system_error& e) {
    return e.code().value();
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  if (queue) {
    try {
      pd_lock(*pd, dir);
    } catch (...) {
      pd_release(*pd);
      throw;
    }
  } else if (!pd_trylock(*pd, dir)) {
    pd_release(*pd);
    return EBUSY;
  }
  t.pd = pd;
  t.dir = dir;
  return 0;
}

int hook_wait(fd_turn& t, std::int64_t deadline) {
  poll_desc& pd = *t.pd;
  if (pd_closing(pd)) return EBADF;
  if (deadline != no_deadline && deadline <= now_ns()) return ETIMEDOUT;
  try {
    netpoll_wait(pd, t.dir, deadline, false);
  } catch (const std::system_error& e) {
    return e.code().value();  // epoll_ctl refused the descriptor
  }
  if (pd_closing(pd)) return EBADF;
  if (deadline != no_deadline && deadline <= now_ns()) return ETIMEDOUT;
  return 0;
}

void hook_end_turn(fd_turn& t) noexcept {
  pd_unlock(*t.pd, t.dir);
  pd_release(*t.pd);
  t.pd = nullptr;
}

void hook_forget(int fd) noexcept { pd_revoke(fd); }

}  // namespace weft::detail
