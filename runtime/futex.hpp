#pragma once
// futex.hpp: the two futex operations the runtime sleeps and wakes with.
// Callers keep the protocol in the atomic word itself (futexes wake
// spuriously); these wrappers only enter the kernel.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "runtime/sanitizers.hpp"

namespace weft::detail {

// futex_wait: sleep while *word == expected, at most `rel` if given.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       const timespec* rel = nullptr) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, rel,
            nullptr, 0);
#if WEFT_TSAN
  // TSan runs a program's signal handlers only inside its interceptors, and
  // syscall(2) is not one: a signal that interrupted this wait (EINTR:
  // weft::signal installs its handler without SA_RESTART under TSan) would
  // stay pending while the thread sleeps again. usleep is an interceptor.
  ::usleep(0);
#endif
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int n = 1) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr,
            nullptr, 0);
}

// full_fence: a StoreLoad barrier, for the Dekker-style handshakes between
// submitters and idling workers. A locked add to the stack is as strong as
// mfence and cheaper on x86.
inline void full_fence() noexcept {
#if defined(__x86_64__) && !WEFT_TSAN
  asm volatile("lock orq $0, (%%rsp)" ::: "memory", "cc");
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace weft::detail
