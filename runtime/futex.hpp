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

namespace weft::detail {

// futex_wait: sleep while *word == expected, at most `rel` if given.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       const timespec* rel = nullptr) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, rel,
            nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int n = 1) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr,
            nullptr, 0);
}

// full_fence: a StoreLoad barrier, for the Dekker-style handshakes between
// submitters and idling workers. A locked add to the stack is as strong as
// mfence and cheaper on x86.
inline void full_fence() noexcept {
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__) && !defined(WEFT_TSAN)
  asm volatile("lock orq $0, (%%rsp)" ::: "memory", "cc");
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace weft::detail
