// overflow.cpp: reporting fiber stack overflows.
//
// A fiber that runs off the bottom of its stack hits the guard page below
// it (guarded stacks), or, on canary stacks, either trips the canary check
// at its next switch (switch.cpp, check_stack) or runs on into the guard
// page at the bottom of its slab. The SIGSEGV/SIGBUS handler runs on an
// alternate signal stack (the faulting stack is unusable), decides from the
// fault address and the faulting stack pointer whether the fiber running on
// this thread overflowed, and if so prints
//   weft: fiber <id> (started at <file>:<line>) overflowed its <N> KiB stack
// and aborts. Any other fault goes to the handler that was installed before
// ours (or the default action), so sanitizers and crash reporters still see it.
// Everything here is async-signal-safe: no allocation, no stdio.

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/scheduler.hpp"
#include "runtime/sys.hpp"

namespace weft::detail {
namespace {

struct sigaction old_segv, old_bus;
std::once_flag installed;
thread_local void* alt_mem = nullptr;
thread_local stack_t alt_prev{};  // the thread's alternate stack before ours
// Lazily committed: generous so sanitizer runtimes, which run their own
// handlers on it too, have room.
constexpr std::size_t alt_size = 256 * 1024;

// A fixed buffer appended to without libc formatting.
struct line_buf {
  char data[512];
  std::size_t len = 0;
  void put(const char* s) noexcept {
    while (s != nullptr && *s != '\0' && len < sizeof data - 1) data[len++] = *s++;
  }
  void put(std::uint64_t v) noexcept {
    char tmp[24];
    int n = 0;
    do {
      tmp[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0 && len < sizeof data - 1) data[len++] = tmp[--n];
  }
};

void chain(int sig, siginfo_t* si, void* uctx) noexcept {
  const struct sigaction& old = sig == SIGBUS ? old_bus : old_segv;
  if ((old.sa_flags & SA_SIGINFO) != 0 && old.sa_sigaction != nullptr) {
    old.sa_sigaction(sig, si, uctx);
    return;
  }
  if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler != nullptr) {
    old.sa_handler(sig);
    return;
  }
  // Default action: reinstate it and return; the fault repeats and kills us.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
}

std::uintptr_t fault_sp(void* uctx) noexcept {
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(static_cast<ucontext_t*>(uctx)->uc_mcontext.sp);
#else
  (void)uctx;
  return 0;
#endif
}

void on_fault(int sig, siginfo_t* si, void* uctx) {
  machine* m = current_m();
  fiber* f = m != nullptr ? m->curg : nullptr;
  if (f != nullptr && f->stack != nullptr) {
    const auto lo = reinterpret_cast<std::uintptr_t>(f->stack->lo);
    const auto addr = reinterpret_cast<std::uintptr_t>(si->si_addr);
    const std::uintptr_t sp = fault_sp(uctx);
    constexpr std::uintptr_t near = 64 * 1024;
    const bool addr_below = addr < lo && addr + near >= lo;
    const bool sp_below = sp != 0 && sp < lo && sp + (std::uintptr_t{1} << 30) >= lo;
    if (addr_below || sp_below) report_overflow(f);
  }
  chain(sig, si, uctx);
}

}  // namespace

void report_overflow(const fiber* f) noexcept {
  line_buf b;
  b.put("weft: fiber ");
  b.put(f->get_id());
  b.put(" (started at ");
  b.put(f->get_file());
  b.put(":");
  b.put(std::uint64_t{f->get_line()});
  b.put(") overflowed its ");
  b.put(g_sched != nullptr ? g_sched->stacks.usable() / 1024 : 0);
  b.put(" KiB stack\n");
  (void)!sys_write(2, b.data, b.len);
  std::abort();
}

void install_overflow_handler() noexcept {
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, &old_segv);
    ::sigaction(SIGBUS, &sa, &old_bus);
  });
}

void altstack_install() noexcept {
  if (alt_mem != nullptr) return;
  void* mem = ::mmap(nullptr, alt_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  stack_t ss{};
  ss.ss_sp = mem;
  ss.ss_size = alt_size;
  if (::sigaltstack(&ss, &alt_prev) != 0) {
    ::munmap(mem, alt_size);
    return;
  }
  alt_mem = mem;
}

void altstack_remove() noexcept {
  if (alt_mem == nullptr) return;
  if ((alt_prev.ss_flags & SS_DISABLE) != 0 || alt_prev.ss_sp == nullptr) {
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    ::sigaltstack(&ss, nullptr);
  } else {
    alt_prev.ss_flags = 0;
    ::sigaltstack(&alt_prev, nullptr);
  }
  ::munmap(alt_mem, alt_size);
  alt_mem = nullptr;
}

}  // namespace weft::detail
