#pragma once
// context.hpp: the one place that switches execution contexts.
//
// Design
//   A context is a fiber or a worker thread's own scheduler stack ("g0").
//   Switching uses Boost.Context's fcontext primitives (make_fcontext,
//   jump_fcontext: the layer boost::context::fiber is a thin wrapper over).
//   Using them directly lets a fiber get its stack only when it first runs
//   (lazy binding, no creation round trip) and lets every switch carry an
//   "after switch" action that runs on the target side once the source's
//   registers are saved: requeue a yielder, release the lock a parking fiber
//   published itself under, recycle a finished fiber's stack.
//   Rejected: boost::context::fiber (creating one jumps into it and back;
//   its resume_with copies the functor; its first jump cannot be annotated
//   for the sanitizers).
//
//   Each switch also swaps the C++ runtime's per-thread exception globals
//   (__cxa_get_globals: the caught-exception stack and the uncaught count),
//   so a fiber that parks inside a catch block, or while unwinding, keeps
//   its own exception state when other fibers run on its thread or when it
//   resumes on another thread. Without this, std::uncaught_exceptions() and
//   nested catch/rethrow break as soon as fibers interleave. errno is
//   swapped the same way, so it behaves as if each fiber were a thread.
//   (What no runtime can fix: code that took errno's address before a call
//   that switches keeps using the old thread's errno after a migration;
//   compilers do hoist __errno_location(). See README "Fibers and threads".)
//
// Invariants
//   C1  A context's `fctx` is valid only while it is suspended; it is written
//       on the target side of the switch that suspended it (arrive()).
//   C2  The after-switch action runs on the same OS thread as the switch, on
//       the target context, before the target's own code continues.
//   C3  Every switch, and nothing else, calls the sanitizer fiber hooks.

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>
#include <cstdint>

#include "runtime/sanitizers.hpp"

namespace weft::detail {

namespace bctx = boost::context::detail;

// The C++ runtime's per-thread exception state (libstdc++/libsupc++ and
// libc++abi share this layout on x86-64 and aarch64 Linux).
struct eh_state {
  void* caught = nullptr;
  unsigned int uncaught = 0;
};

struct exec_context {
  bctx::fcontext_t fctx = nullptr;  // C1
  eh_state eh;                      // this context's exception state while suspended
  int saved_errno = 0;              // this context's errno while suspended
#if WEFT_ASAN
  void* asan_fake_stack = nullptr;
#endif
#if WEFT_ASAN || WEFT_TSAN
  const void* stack_lo = nullptr;  // lowest address of this context's stack
  std::size_t stack_size = 0;
#endif
#if WEFT_TSAN
  void* tsan_fiber = nullptr;
#endif
};

// switch_action: runs on the target side after the switch (C2).
struct switch_action {
  void (*fn)(void* arg) = nullptr;
  void* arg = nullptr;
};

// thread_slots: where the calling thread keeps the per-thread state a
// switch saves and restores. Filled once per thread, on that thread, by
// init_thread_slots(), and cached by the thread's machine.
struct thread_slots {
  eh_state* eh = nullptr;
  int* err = nullptr;
};
void init_thread_slots(thread_slots& ts) noexcept;

// switch_to: suspend `from` and resume `to`; returns when someone switches
// back to `from`. `act` runs on `to` first. `ts` is the calling thread's.
void switch_to(const thread_slots& ts, exec_context& from, exec_context& to,
               switch_action act) noexcept;

// switch_final: leave a context that will never run again (a finished
// fiber); `act` typically recycles its stack.
[[noreturn]] void switch_final(const thread_slots& ts, exec_context& to,
                               switch_action act) noexcept;

// make_context: prepare `ctx` to start `entry` on the stack [lo, lo+size)
// at its next switch_to. `entry` receives the jump and must call
// context_entered() first.
void make_context(exec_context& ctx, void* lo, std::size_t size,
                  void (*entry)(bctx::transfer_t)) noexcept;

// context_entered: the first thing a new context's entry does.
void context_entered(bctx::transfer_t t, exec_context& self) noexcept;

// init_thread_context: sanitizer bookkeeping for a thread's own stack (it
// needs no destroy). destroy_context: for a fiber context that has ended.
void init_thread_context(exec_context& ctx) noexcept;
void destroy_context(exec_context& ctx) noexcept;

}  // namespace weft::detail
