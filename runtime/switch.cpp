// switch.cpp: switching fibers: making a fiber runnable (ready, inject), and
// parking, yielding or finishing the running one.
//
// Design
//   A fiber that parks, yields or exits switches directly to the next fiber
//   of its processor (pick_local); only when there is none does it switch to
//   its machine's g0, which looks further and sleeps (find_runnable,
//   scheduler.cpp). ready() puts a fiber in the running fiber's processor's
//   `next` slot and wakes a machine only by the spinning rules (K1,
//   "Spinning" in scheduler.cpp). The helpers shared with scheduler.cpp are
//   in sched_internal.hpp.
//
// Park protocol ("the delicate dance")
//   park_current() switches away first and runs `release` (typically
//   unlocking the object the fiber queued itself on) on the next context,
//   so a waker can never resume a fiber whose registers are not yet saved.
//   yield requeues the yielder the same way, from the far side.
//
// Invariants (W1, who may touch a processor, is in scheduler.cpp)
//   W2  A fiber is resumed by exactly one party: whoever took it from a
//       queue (run_queue R2/R4, global queue under its lock).
//   W3  machine::curg is the fiber whose code the thread runs, null on g0;
//       it is set before the switch into that fiber.
//   W4  In phase::stopping no fiber is started or resumed; in phase::final
//       only run()'s thread resumes fibers, to unwind them.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "runtime/asym_fence.hpp"
#include "runtime/debug_internal.hpp"
#include "runtime/sched_internal.hpp"

namespace weft::detail {

namespace {

// initial-exec: one %fs-relative load, no __tls_get_addr call (weft is
// linked into the executable or loaded at startup, never dlopen'ed late).
__attribute__((tls_model("initial-exec"))) thread_local machine* tls_m = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local ready_batch* tls_batch = nullptr;

// runq_put: queue f on p, the caller's own processor (W1, scheduler.cpp);
// with `next`, in its `next` slot, queueing the fiber it displaces.
void runq_put(processor* p, fiber* f, bool next) noexcept {
  if (next) {
    f = p->runq.set_next(f);
    if (f == nullptr) return;
  }
  while (!p->runq.push(f)) {
    // Full: move the older half and f to the global queue in one batch.
    fiber* batch[local_queue_size / 2 + 1];
    const std::uint32_t n = p->runq.take_half(batch);
    batch[n] = f;
    S().gq.push_many(batch, n + 1);
    return;
  }
}

// ---- after-switch actions ----

void requeue_action(void* arg) {
  machine* m = current_m();
  runq_put(m->p, static_cast<fiber*>(arg), false);
}

void recycle_action(void* arg) {
  auto* f = static_cast<fiber*>(arg);
  machine* m = current_m();
  destroy_context(f->ctx);
  f->ctx.fctx = nullptr;
  if (f->stack != nullptr) {
    if (m->p != nullptr) {
      S().stacks.release(m->p->stacks, f->stack);
    } else {
      stack_cache tmp;
      S().stacks.release(tmp, f->stack);
      S().stacks.flush(tmp);
    }
    f->stack = nullptr;
  }
  if (m->p != nullptr) {
    m->p->finished.inc();
    S().fibers.release(m->p->records, f);
  } else {
    S().fibers.release_shared(f);
  }
}

// Choose what runs after the current fiber leaves (W4): a local fiber, or g0.
inline fiber* next_after_leave(machine* m) noexcept {
  if (m->p == nullptr || m->in_blocking ||
      S().ph.load(std::memory_order_relaxed) != phase::running) {
    return nullptr;
  }
  return pick_local(m->p);
}

}  // namespace

// throw_unwind: the fiber was resumed to be unwound (shutdown) and is in
// normal execution again: it caught fiber_unwind and did not rethrow. Throw
// it again; a fiber that keeps swallowing it would never finish, so report.
[[noreturn]] void throw_unwind(fiber* self) {
  if (++self->rethrows > 1000) {
    std::fprintf(stderr,
                 "weft: fiber %llu (started at %s:%u) keeps swallowing the shutdown unwind "
                 "(a catch (...) that does not rethrow)\n",
                 static_cast<unsigned long long>(self->get_id()), self->get_file(),
                 self->get_line());
    std::abort();
  }
  throw fiber_unwind{};
}

// ---- public to the runtime ----

[[gnu::noinline]] machine* current_m() noexcept {
  asm volatile("" ::: "memory");
  return tls_m;
}
[[gnu::noinline]] void set_current_m(machine* m) noexcept { tls_m = m; }

fiber* current_fiber() noexcept {
  machine* m = current_m();
  return m != nullptr ? m->curg : nullptr;
}

void set_ready_batch(ready_batch* b) noexcept { tls_batch = b; }

std::uint64_t next_fiber_id(processor* p) noexcept {
  static std::atomic<std::uint64_t> next_batch{1};
  if (p == nullptr) return next_batch.fetch_add(1, std::memory_order_relaxed);
  if (p->next_id == p->id_limit) {
    p->next_id = next_batch.fetch_add(1024, std::memory_order_relaxed);
    p->id_limit = p->next_id + 1024;
  }
  return p->next_id++;
}

std::atomic<std::int64_t> g_coarse_ns{0};

std::int64_t coarse_now_ns() noexcept {
  const std::int64_t t = now_ns();
  g_coarse_ns.store(t, std::memory_order_relaxed);
  return t;
}

void ready(fiber* f) noexcept {
  f->state.store(fiber_state::runnable, std::memory_order_relaxed);
  scheduler& s = S();
  if (s.ph.load(std::memory_order_relaxed) == phase::final) {
    // Shutdown unwinding (runtime.cpp): run()'s thread resumes it from this
    // list. queued_final keeps it from being listed (and resumed) twice.
    std::lock_guard<std::mutex> lk(s.final_mu);
    if (f->queued_final) return;
    f->queued_final = true;
    f->link = nullptr;
    if (s.final_last != nullptr) {
      s.final_last->link = f;
    } else {
      s.final_first = f;
    }
    s.final_last = f;
    return;
  }
  machine* m = current_m();
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    runq_put(m->p, f, true);
    wakep();
    return;
  }
  s.shared_readies.fetch_add(1, std::memory_order_relaxed);
  if (m == nullptr && tls_batch == nullptr) note_foreign_call();  // a plain thread woke a fiber
  if (ready_batch* b = tls_batch) {
    if (b->n == ready_batch::capacity) {
      inject(b->fibers, b->n);
      b->n = 0;
    }
    b->fibers[b->n++] = f;
    return;
  }
  s.gq.push(f);
  wakep();
}

void ready_spawned(fiber* f) noexcept { ready(f); }

void inject(fiber* const* fs, std::size_t n) noexcept {
  if (n == 0) return;
  S().gq.push_many(fs, n);
  asym_light();  // K1
  for (; n != 0 && S().npidle.load(std::memory_order_relaxed) != 0; --n) startm(nullptr, false);
}

void park_current(switch_action release, wait_reason why, const void* obj, std::int64_t note) {
  machine* m = current_m();
  fiber* self = m->curg;
  if (self->unwinding && std::uncaught_exceptions() == 0) {
    if (release.fn != nullptr) release.fn(release.arg);
    throw_unwind(self);
  }
  self->reason.store(why, std::memory_order_relaxed);
  self->wait_obj.store(obj, std::memory_order_relaxed);
  self->wait_note.store(note, std::memory_order_relaxed);
  self->wait_since.store(g_coarse_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
  self->state.store(fiber_state::parked, std::memory_order_relaxed);
  check_stack(self, __builtin_frame_address(0));
  if (fiber* next = next_after_leave(m)) {
    prepare_run(m, m->p, next);
    switch_to(m->ts, self->ctx, next->ctx, release);
  } else {
    leave_for_g0(m);
    switch_to(m->ts, self->ctx, m->g0, release);
  }
  // Resumed, perhaps on another machine: re-read nothing cached above.
  self->reason.store(wait_reason::none, std::memory_order_relaxed);
  if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
}

void yield_current() {
  machine* m = current_m();
  if (m == nullptr || m->curg == nullptr || m->in_blocking) {
    std::this_thread::yield();  // not a fiber (or inside blocking): yield the thread
    return;
  }
  fiber* self = m->curg;
  if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
  if (S().ph.load(std::memory_order_relaxed) != phase::running) {
    // Shutdown: stay off the queues; the final phase unwinds us (W4).
    self->state.store(fiber_state::runnable, std::memory_order_relaxed);
    leave_for_g0(m);
    switch_to(m->ts, self->ctx, m->g0, {});
    if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
    return;
  }
  processor* p = m->p;
  fire_timers(p);
  fiber* next = pick_local(p);
  if (next == nullptr) next = global_get(p, 1);
  if (next == nullptr) return;  // nothing else to run here
  check_stack(self, __builtin_frame_address(0));
  self->state.store(fiber_state::runnable, std::memory_order_relaxed);
  prepare_run(m, p, next);
  switch_to(m->ts, self->ctx, next->ctx, {&requeue_action, self});
  if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
}

void exit_current() noexcept {
  machine* m = current_m();
  fiber* self = m->curg;
  self->state.store(fiber_state::dead, std::memory_order_relaxed);
  check_stack(self, __builtin_frame_address(0));
  if (m->p != nullptr && !m->in_blocking) fire_timers(m->p);
  const switch_action recycle{&recycle_action, self};
  if (fiber* next = next_after_leave(m)) {
    prepare_run(m, m->p, next);
    switch_final(m->ts, next->ctx, recycle);
  }
  leave_for_g0(m);
  switch_final(m->ts, m->g0, recycle);
}

// ---- fiber entry ----

void bind_stack(processor* p, fiber* f) {
  f->stack = S().stacks.acquire(p->stacks);
  make_context(f->ctx, f->stack->lo, f->stack->size, &fiber_entry);
}

void fiber_entry(bctx::transfer_t t) noexcept {
  fiber* self = current_m()->curg;
  context_entered(t, self->ctx);
  try {
    self->ops->run(self->closure);
  } catch (const fiber_unwind&) {
    // Unwound at shutdown: done.
  } catch (...) {
    if (self->is_main) {
      S().main_exception = std::current_exception();
    } else {
      const char* what = "unknown exception";
      try {
        throw;
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      std::fprintf(stderr, "weft: fiber %llu (started at %s:%u) terminated by exception: %s\n",
                   static_cast<unsigned long long>(self->get_id()), self->get_file(),
                   self->get_line(), what);
      std::fflush(stderr);
      std::terminate();
    }
  }
  if (self->heap_closure) {
    closure_free(self->closure);
    self->closure = nullptr;
  }
  // Main returned: shutdown begins. Idle machines stay asleep; each busy
  // one goes idle at its running fiber's next scheduling point (W4), and
  // the last to go idle wakes run()'s thread (stopm, scheduler.cpp).
  if (self->is_main) S().ph.store(phase::stopping, std::memory_order_seq_cst);
  exit_current();
}

}  // namespace weft::detail
