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
#include <thread>

#include "runtime/asym_fence.hpp"
#include "runtime/debug_internal.hpp"
#include "runtime/locks.hpp"
#include "runtime/sched_internal.hpp"
#include "weft/detail/check.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {

namespace {

// initial-exec: one %fs-relative load, no __tls_get_addr call (weft is
// linked into the executable or loaded at startup, never dlopen'ed late).
__attribute__((tls_model("initial-exec"))) thread_local machine* tls_m = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local ready_batch* tls_batch = nullptr;

}  // namespace

// 0 while this thread runs a machine (set with tls_m), 1 otherwise. Read
// by the inline entry checks of weft/detail/park.hpp under its asm name.
constinit thread_local std::uint32_t tls_plain_thread asm("weft_tls_plain_thread")
    __attribute__((tls_model("initial-exec"))) = 1;

namespace {

// runq_put: queue f on p, the caller's own processor (W1, scheduler.cpp);
// with `next`, in its `next` slot, queueing the fiber it displaces.
void runq_put(processor* p, fiber* f, bool next) noexcept {
  WEFT_DCHECK(p->m == current_m(), "W1: only the holder queues on a processor");
  if (next) {
    f = p->runq.set_next(f);
    if (f == nullptr) return;
  }
  if (p->runq.push(f)) return;
  // Full: move the older half and f to the global queue in one batch.
  fiber* batch[local_queue_size / 2 + 1];
  const std::uint32_t n = p->runq.take_half(batch);
  batch[n] = f;
  g_sched->gq.push_many(batch, n + 1);
  if (g_sched->gq.size_hint() >= spawn_backlog_max) p->spawn_backlog = true;  // runtime.cpp
}

// ---- after-switch actions ----

void requeue_action(void* arg) {
  machine* m = current_m();
  runq_put(m->p, static_cast<fiber*>(arg), false);
}

void requeue_global_action(void* arg) { g_sched->gq.push(static_cast<fiber*>(arg)); }

void recycle_action(void* arg) {
  auto* f = static_cast<fiber*>(arg);
  machine* m = current_m();
  destroy_context(f->ctx);
  f->ctx.fctx = nullptr;
  if (f->stack != nullptr) {
    if (m->p != nullptr) {
      g_sched->stacks.release(m->p->stacks, f->stack);
    } else {
      stack_cache tmp;
      g_sched->stacks.release(tmp, f->stack);
      g_sched->stacks.flush(tmp);
    }
    f->stack = nullptr;
  }
  if (m->p != nullptr) {
    m->p->finished.inc();
    g_sched->fibers.release(m->p->records, f);
  } else {
    g_sched->fibers.release_shared(f);
  }
}

// perturbed_release: a park's release wrapped in perturbation points (the
// thread stalls with the lock still held, or just after the fiber became
// findable). Copies the release out of the parking fiber's frame first:
// once it has run, that fiber may be running elsewhere.
void perturbed_release(void* arg) {
  const switch_action inner = *static_cast<const switch_action*>(arg);
  perturb_slow(perturb_site::park_commit);
  if (inner.fn != nullptr) inner.fn(inner.arg);
  perturb_slow(perturb_site::park_commit);
}

// Choose what runs after the current fiber leaves (W4): a local fiber, or g0.
inline fiber* next_after_leave(machine* m) noexcept {
  if (m->p == nullptr || m->in_blocking ||
      g_sched->ph.load(std::memory_order_relaxed) != phase::running) {
    return nullptr;
  }
  return pick_local(m->p);
}

// leave_parked: switch away from `self`, which is parking, to the next
// local fiber or to g0; `release` runs on the far side (the park protocol).
[[gnu::always_inline]] inline void leave_parked(machine* m, fiber* self, switch_action release) {
  if (fiber* next = next_after_leave(m)) {
    prepare_run(m, m->p, next);
    switch_to(m->ts, self->ctx, next->ctx, release);
  } else {
    leave_for_g0(m);
    switch_to(m->ts, self->ctx, m->g0, release);
  }
}

// leave_parked_perturbed: the same, with the release wrapped in
// perturbation points and one more once the fiber resumes. Out of line, so
// the unperturbed park pays one load and one branch for it.
[[gnu::noinline]] void leave_parked_perturbed(machine* m, fiber* self, switch_action release) {
  switch_action inner = release;
  leave_parked(m, self, {&perturbed_release, &inner});
  perturb_slow(perturb_site::park_resumed);
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
[[gnu::noinline]] void set_current_m(machine* m) noexcept {
  tls_m = m;
  tls_plain_thread = m == nullptr ? 1 : 0;
}

[[gnu::noinline]] bool plain_thread() noexcept { return tls_plain_thread != 0; }

fiber* current_fiber() noexcept {
  machine* m = current_m();
  return m != nullptr ? m->curg : nullptr;
}

unsigned current_processor_index() noexcept { return current_m()->p->index; }

bool in_final_phase() noexcept {
  return g_sched->ph.load(std::memory_order_relaxed) == phase::final;
}

bool all_processors_idle() noexcept {
  // seq_cst: the caller's Dekker partner (netpoll.cpp, "Who polls").
  return g_sched->npidle.load(std::memory_order_seq_cst) >= static_cast<int>(g_sched->nprocs);
}

void set_ready_batch(ready_batch* b) noexcept { tls_batch = b; }

void runtime_own_work(bool begin) noexcept {
  machine* m = current_m();
  if (m == nullptr || m->p == nullptr || m->in_blocking) return;
  // A bump per call, so begin and end leave rtwork odd between them (no
  // switch happens while spinning: the same processor both times).
  processor* p = m->p;
  p->rtwork.store(p->rtwork.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  (void)begin;
}

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

namespace {

// ready_final: ready f while fibers are unwound (runtime.cpp): run()'s
// thread resumes it from the readied list. U1: the parked -> runnable
// step and the listing happen under final_mu, where the unwinder's sweep
// takes parked -> running, so exactly one of them resumes f. When the
// sweep won, f is being unwound out of the wait this ready ends (its
// waker unparks before f can leave that wait, chan_core.hpp C5): the wake
// is spent.
void ready_final(scheduler& s, fiber* f) noexcept {
  os_lock lk(s.final_mu);
  fiber_state st = fiber_state::parked;
  if (!f->state.compare_exchange_strong(st, fiber_state::runnable, std::memory_order_relaxed)) {
    if (st != fiber_state::running) ++s.late_wakes;
    WEFT_DCHECK(st == fiber_state::running, "U1: a fiber readied at shutdown is parked or unwound");
    return;
  }
  WEFT_DCHECK(!f->queued_final, "U1: a parked fiber is on no list");
  f->queued_final = true;
  f->link = nullptr;
  if (s.final_last != nullptr) {
    s.final_last->link = f;
  } else {
    s.final_first = f;
  }
  s.final_last = f;
}

// ready_unwinding: ready in phase final (U3 for a new fiber, else U1).
void ready_unwinding(scheduler& s, fiber* f, bool spawned) noexcept {
  if (!spawned) {
    ready_final(s, f);
    return;
  }
  // U3 (runtime.cpp): a fiber started while fibers are unwound never
  // runs; the unwinder's sweep finds its record and drops its closure.
  transition(f, fiber_state::free, fiber_state::runnable);
}

// ready_foreign: a plain thread readies f. U4 (runtime.cpp): the phase is
// read inside foreign_readies, so run() cannot tell the machines to exit
// (nor unwind) while this thread queues f and wakes a machine for it.
[[gnu::noinline]] void ready_foreign(fiber* f, bool spawned) noexcept {
  // Pinned while it touches the scheduler (runtime.cpp L1). If the pin
  // fails, run() has stopped accepting plain threads and f is parked until
  // it is unwound; the waker holds the lock f's unwinding takes
  // (chan_core.hpp C5), so the scheduler outlives this call anyway.
  const runtime_pin pin;
  if (!pin && forked_child()) forked_child_fatal();  // runtime.cpp, "Fork"
  scheduler& s = *g_sched;
  // seq_cst: with run()'s store of phase::final and its load of
  // foreign_readies, a Dekker pair: either this load sees final, or run()
  // sees this ready in flight and waits for it.
  s.foreign_readies.fetch_add(1, std::memory_order_seq_cst);
  if (s.ph.load(std::memory_order_seq_cst) == phase::final) {
    ready_unwinding(s, f, spawned);
  } else {
    transition(f, spawned ? fiber_state::free : fiber_state::parked, fiber_state::runnable);
    s.shared_readies.fetch_add(1, std::memory_order_relaxed);
    note_foreign_call();  // a plain thread woke a fiber
    s.gq.push(f);
    wakep();
  }
  s.foreign_readies.fetch_sub(1, std::memory_order_release);  // pairs with run()'s load
}

inline void ready_impl(fiber* f, bool spawned) noexcept {
  machine* m = current_m();
  if (m == nullptr && tls_batch == nullptr) {
    ready_foreign(f, spawned);
    return;
  }
  scheduler& s = *g_sched;
  // On the runtime's own threads a relaxed load is exact: phase final is
  // stored by run()'s thread, the only one of them left by then (U4).
  if (s.ph.load(std::memory_order_relaxed) == phase::final) {
    ready_unwinding(s, f, spawned);
    return;
  }
  transition(f, spawned ? fiber_state::free : fiber_state::parked, fiber_state::runnable);
  if (m != nullptr && m->p != nullptr && !m->in_blocking) {
    // Perturbed: sometimes behind the queue, or globally, instead of `next`.
    bool next = true;
    if (perturb_on()) {
      if (perturb_chance(16)) {
        s.gq.push(f);
        wakep();
        return;
      }
      next = !perturb_chance(4);
    }
    runq_put(m->p, f, next);
    wakep();
    return;
  }
  // A fiber inside blocking(), or a thread with a batch (the poller).
  s.shared_readies.fetch_add(1, std::memory_order_relaxed);
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

}  // namespace

void ready(fiber* f) noexcept { ready_impl(f, false); }

void ready_spawned(fiber* f) noexcept { ready_impl(f, true); }

void inject(fiber* const* fs, std::size_t n, bool front) noexcept {
  if (n == 0) return;
  if (front) {
    g_sched->gq.push_front_many(fs, n);
  } else {
    g_sched->gq.push_many(fs, n);
  }
  asym_light();  // K1
  for (; n != 0 && g_sched->npidle.load(std::memory_order_relaxed) != 0; --n)
    startm(nullptr, false);
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
  transition(self, fiber_state::running, fiber_state::parked);
  check_stack(self, __builtin_frame_address(0));
  if (perturb_on()) {
    leave_parked_perturbed(m, self, release);
  } else {
    leave_parked(m, self, release);
  }
  // Resumed, perhaps on another machine: re-read nothing cached above.
  self->reason.store(wait_reason::none, std::memory_order_relaxed);
  if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
}

namespace {

void yield_impl(bool behind_global) {
  machine* m = current_m();
  if (m == nullptr || m->curg == nullptr || m->in_blocking) {
    std::this_thread::yield();  // not a fiber (or inside blocking): yield the thread
    return;
  }
  fiber* self = m->curg;
  if (self->unwinding) {
    // U6 (runtime.cpp): no other fiber runs while this one is unwound.
    if (std::uncaught_exceptions() == 0) throw_unwind(self);
    return;
  }
  if (g_sched->ph.load(std::memory_order_relaxed) != phase::running) {
    // Shutdown: stay off the queues; the final phase unwinds us (W4).
    transition(self, fiber_state::running, fiber_state::runnable);
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
  transition(self, fiber_state::running, fiber_state::runnable);
  prepare_run(m, p, next);
  switch_to(m->ts, self->ctx, next->ctx,
            {behind_global ? &requeue_global_action : &requeue_action, self});
  if (self->unwinding && std::uncaught_exceptions() == 0) throw_unwind(self);
}

}  // namespace

void yield_current() { yield_impl(false); }

void yield_behind_global() { yield_impl(true); }

void fire_timers_before_wait() noexcept {
  const machine* m = current_m();
  if (m == nullptr || m->p == nullptr || m->in_blocking) return;
  if (g_timers.earliest() != INT64_MAX) g_timers.fire_due(now_ns());
}

void exit_current() noexcept {
  machine* m = current_m();
  fiber* self = m->curg;
  transition(self, fiber_state::running, fiber_state::dead);
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
  // The runtime's time, not f's: perhaps the pool's lock and a new slab,
  // and make_context's first touch of a fresh stack (a page fault).
  runtime_work rw(p);
  f->stack = g_sched->stacks.acquire(p->stacks);
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
    if (self->main_fiber()) {
      g_sched->main_exception = std::current_exception();
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
  // the last to go idle wakes run()'s thread (stopm, scheduler.cpp). Main
  // unwound after a deadlock verdict ends in phase final, which stays (U5).
  if (self->main_fiber()) advance_phase(*g_sched, phase::stopping);
  exit_current();
}

}  // namespace weft::detail
