// context.cpp: the context switch (see context.hpp for the design).

#include "runtime/context.hpp"

#include <cxxabi.h>
#include <pthread.h>

#include <cerrno>

#if WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

// The switch functions are not instrumented by ASan: their locals (the
// handoff record above all) must live on the real stack, not on ASan's
// per-fiber "fake stack" of detect_stack_use_after_return, which
// __sanitizer_start_switch_fiber(nullptr, ...) frees when a fiber ends while
// the target still has to read the record.
#if WEFT_ASAN
#define WEFT_NO_ASAN __attribute__((no_sanitize("address")))
#else
#define WEFT_NO_ASAN
#endif

namespace weft::detail {
namespace {

// The record a switch leaves on the source's stack for the target to read.
// The target copies it before running the action: after the action the
// source may be resumed elsewhere and its stack reused.
struct handoff {
  exec_context* from;  // null when the source has ended
  switch_action act;
};

// __cxa_get_globals is declared `const`, so the compiler may reuse one
// thread's answer after a switch has moved us to another thread: call it
// through a function it cannot see into.
[[gnu::noinline]] eh_state* eh_globals() noexcept {
  asm volatile("" ::: "memory");
  return reinterpret_cast<eh_state*>(abi::__cxa_get_globals());
}

WEFT_NO_ASAN inline void arrive(bctx::transfer_t t, exec_context& self) noexcept {
  auto* h = static_cast<handoff*>(t.data);
  exec_context* from = h->from;
  const switch_action act = h->act;
#if WEFT_ASAN
  const void* old_lo = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(self.asan_fake_stack, &old_lo, &old_size);
#else
  (void)self;
#endif
  if (from != nullptr) from->fctx = t.fctx;
  if (act.fn != nullptr) act.fn(act.arg);
}

// jump: bctx::jump_fcontext without a `call`.
//
// jump_fcontext leaves through `pop %r8; jmp *%r8`, not `ret`, so entering
// it with `call` leaves one entry on the CPU's return-stack buffer that is
// never consumed: every return the resumed context makes afterwards is
// predicted one frame off and mispredicts (~4 returns per switch, ~20 ns on
// the dev VM, three quarters of a yield). Pushing the return address by hand
// and jumping keeps the buffer balanced: the resumed context's returns are
// predicted from the suspended one's identical call chain. Callee-saved
// registers are saved by jump_fcontext itself; the asm clobbers the rest.
#if defined(__x86_64__) && !WEFT_ASAN && !WEFT_TSAN
inline bctx::transfer_t jump(bctx::fcontext_t to, void* data) noexcept {
  register void* rdi asm("rdi") = to;
  register void* rsi asm("rsi") = data;
  register void* rax asm("rax");
  register void* rdx asm("rdx");
  asm volatile(
      "sub $128, %%rsp\n\t"  // step over the red zone
      "lea 1f(%%rip), %%rcx\n\t"
      "push %%rcx\n\t"
      "jmp *jump_fcontext@GOTPCREL(%%rip)\n"
      "1:\n\t"
      "add $128, %%rsp\n\t"
      : "=r"(rax), "=r"(rdx), "+r"(rdi), "+r"(rsi)
      :
      : "rcx", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
        "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
        "xmm15", "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
  return bctx::transfer_t{rax, rdx};
}
#else
inline bctx::transfer_t jump(bctx::fcontext_t to, void* data) noexcept {
  return bctx::jump_fcontext(to, data);
}
#endif

inline void swap_thread_state(const thread_slots& ts, exec_context* from,
                              exec_context& to) noexcept {
  if (from != nullptr) {
    from->eh = *ts.eh;
    from->saved_errno = *ts.err;
  }
  *ts.eh = to.eh;
  *ts.err = to.saved_errno;
}

}  // namespace

void init_thread_slots(thread_slots& ts) noexcept {
  ts.eh = eh_globals();
  ts.err = &errno;
}

WEFT_NO_ASAN void switch_to(const thread_slots& ts, exec_context& from, exec_context& to,
                            switch_action act) noexcept {
  handoff h{&from, act};
  swap_thread_state(ts, &from, to);
#if WEFT_ASAN
  __sanitizer_start_switch_fiber(&from.asan_fake_stack, to.stack_lo, to.stack_size);
#endif
#if WEFT_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  bctx::fcontext_t target = to.fctx;
  to.fctx = nullptr;
  bctx::transfer_t t = jump(target, &h);
  arrive(t, from);
}

WEFT_NO_ASAN void switch_final(const thread_slots& ts, exec_context& to,
                               switch_action act) noexcept {
  handoff h{nullptr, act};
  swap_thread_state(ts, nullptr, to);
#if WEFT_ASAN
  // A null save slot tells ASan this stack is finished: it frees its fake frames.
  __sanitizer_start_switch_fiber(nullptr, to.stack_lo, to.stack_size);
#endif
#if WEFT_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  bctx::fcontext_t target = to.fctx;
  to.fctx = nullptr;
  jump(target, &h);
  __builtin_unreachable();
}

void make_context(exec_context& ctx, void* lo, std::size_t size,
                  void (*entry)(bctx::transfer_t)) noexcept {
  ctx.fctx = bctx::make_fcontext(static_cast<char*>(lo) + size, size, entry);
  ctx.eh = eh_state{};
  ctx.saved_errno = 0;
#if WEFT_ASAN
  ctx.asan_fake_stack = nullptr;
#endif
#if WEFT_ASAN || WEFT_TSAN
  ctx.stack_lo = lo;
  ctx.stack_size = size;
#endif
#if WEFT_TSAN
  ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
}

WEFT_NO_ASAN void context_entered(bctx::transfer_t t, exec_context& self) noexcept {
  arrive(t, self);
}

void init_thread_context(exec_context& ctx) noexcept {
  ctx = exec_context{};
#if WEFT_ASAN || WEFT_TSAN
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* lo = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attr, &lo, &size);
    ctx.stack_lo = lo;
    ctx.stack_size = size;
    pthread_attr_destroy(&attr);
  }
#endif
#if WEFT_TSAN
  ctx.tsan_fiber = __tsan_get_current_fiber();
#endif
}

void destroy_context(exec_context& ctx) noexcept {
#if WEFT_TSAN
  if (ctx.tsan_fiber != nullptr) __tsan_destroy_fiber(ctx.tsan_fiber);
  ctx.tsan_fiber = nullptr;
#else
  (void)ctx;
#endif
}

}  // namespace weft::detail
