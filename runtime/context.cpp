// context.cpp: the context switch (see context.hpp for the design).

#include "runtime/context.hpp"

#include <cxxabi.h>
#include <pthread.h>

#if WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if WEFT_TSAN
#include <sanitizer/tsan_interface.h>
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

inline void arrive(bctx::transfer_t t, exec_context& self) noexcept {
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

inline void swap_eh(exec_context* from, exec_context& to) noexcept {
  eh_state* g = eh_globals();
  if (from != nullptr) from->eh = *g;
  *g = to.eh;
}

}  // namespace

void switch_to(exec_context& from, exec_context& to, switch_action act) noexcept {
  handoff h{&from, act};
  swap_eh(&from, to);
#if WEFT_ASAN
  __sanitizer_start_switch_fiber(&from.asan_fake_stack, to.stack_lo, to.stack_size);
#endif
#if WEFT_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  bctx::fcontext_t target = to.fctx;
  to.fctx = nullptr;
  bctx::transfer_t t = bctx::jump_fcontext(target, &h);
  arrive(t, from);
}

void switch_final(exec_context& to, switch_action act) noexcept {
  handoff h{nullptr, act};
  swap_eh(nullptr, to);
#if WEFT_ASAN
  // A null save slot tells ASan this stack is finished: it frees its fake frames.
  __sanitizer_start_switch_fiber(nullptr, to.stack_lo, to.stack_size);
#endif
#if WEFT_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  bctx::fcontext_t target = to.fctx;
  to.fctx = nullptr;
  bctx::jump_fcontext(target, &h);
  __builtin_unreachable();
}

void make_context(exec_context& ctx, void* lo, std::size_t size,
                  void (*entry)(bctx::transfer_t)) noexcept {
  ctx.fctx = bctx::make_fcontext(static_cast<char*>(lo) + size, size, entry);
  ctx.eh = eh_state{};
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

void context_entered(bctx::transfer_t t, exec_context& self) noexcept { arrive(t, self); }

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
