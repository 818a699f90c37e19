#pragma once
// libc.hpp: libc's own versions of the functions the hooks define.
//
// Resolved once, before main (or at the first hooked call, whichever comes
// first): under ASan or TSan the sanitizer's interceptor (__interceptor_X,
// a strong symbol next to its weak alias X, which the hook overrides), so
// the sanitizer still sees every call; otherwise dlsym(RTLD_NEXT), the next
// definition after the executable: libc's. Nothing here calls a hooked
// function, so resolving cannot recurse.

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

// Every function the hooks define and call through to libc.
// clang-format does not settle on one layout for this table.
// clang-format off
#define WEFT_HOOKED_FUNCTIONS(X) \
  X(read) X(write) X(readv) X(writev) X(recv) X(recvfrom) \
  X(recvmsg) X(send) X(sendto) X(sendmsg) X(accept) X(accept4) \
  X(connect) X(poll) X(ppoll) X(select) X(nanosleep) X(usleep) \
  X(sleep) X(clock_nanosleep) X(getaddrinfo) X(close) X(dup) X(dup2) \
  X(dup3) X(socket) X(socketpair) X(pipe) X(pipe2) X(eventfd) \
  X(fcntl) X(fcntl64) X(ioctl) X(setsockopt)
// clang-format on

// glibc's report of a failed _FORTIFY_SOURCE check (the __*_chk hooks).
extern "C" [[noreturn]] void __chk_fail(void) noexcept;

namespace weft::hooks {

struct libc_functions {
#define WEFT_LIBC_FIELD(name) decltype(&::name) name = nullptr;
  WEFT_HOOKED_FUNCTIONS(WEFT_LIBC_FIELD)
#undef WEFT_LIBC_FIELD
};

// libc: the table (thread-safe static initialisation on first use).
const libc_functions& libc() noexcept;

}  // namespace weft::hooks
