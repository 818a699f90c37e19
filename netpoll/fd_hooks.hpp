#pragma once
// fd_hooks.hpp: everything the libc hooks (hooks/, the weft::hooks target)
// use from the runtime, in one place: whether the caller may park, and
// parking a fiber until a descriptor may be ready (fd_hooks.cpp, on the
// netpoller's records). The hooks include no other runtime header.

#include <cstdint>

namespace weft::detail {

struct poll_desc;

// hook_parkable: the caller is a fiber of a running runtime that may park
// (not a plain thread, not inside weft::blocking).
bool hook_parkable() noexcept;

// hook_now: CLOCK_MONOTONIC in ns, the clock of every deadline below.
std::int64_t hook_now() noexcept;
inline constexpr std::int64_t hook_no_deadline = INT64_MAX;

// fd_turn: one operation's turn on a descriptor in one direction (0 read,
// 1 write): a reference on its netpoller record, which the hooks keep
// registered with epoll until hook_forget, and the record's direction lock,
// so one fiber at a time waits in each direction (later ones queue).
struct fd_turn {
  poll_desc* pd = nullptr;
  int dir = 0;
};

// hook_take_turn: take the turn (the caller must be hook_parkable). With
// `queue`, wait for an operation of the same direction to finish first;
// without it, return EBUSY if one is under way. Returns 0 or an errno
// (EMFILE: past the descriptor table; ENOMEM). May throw the runtime's
// shutdown unwind while queued. The caller re-tries its system call once
// after taking the turn: readiness another fiber consumed while the caller
// had no turn is not signalled again.
int hook_take_turn(int fd, int dir, bool queue, fd_turn& t);
// hook_wait: park until the descriptor may be ready in t.dir, `deadline`
// passes or hook_forget revokes the descriptor. Returns 0 (try again),
// ETIMEDOUT, EBADF (closed or replaced meanwhile) or the errno of epoll_ctl
// when epoll refuses the descriptor (EPERM: a regular file). May throw the
// runtime's shutdown unwind.
int hook_wait(fd_turn& t, std::int64_t deadline);
void hook_end_turn(fd_turn& t) noexcept;

// hook_forget: `fd` is about to be closed or replaced (close, dup2, dup3),
// or was just created (a record it still has is stale): wake the fibers
// waiting on it (they see EBADF) and drop its registration. Any thread.
void hook_forget(int fd) noexcept;

}  // namespace weft::detail
