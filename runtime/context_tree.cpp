// context_tree.cpp: weft::context (weft/context.hpp): the tree of
// cancellation contexts, their deadline timers, and sleeping with a
// context. (Not to be confused with context.cpp, the fibers' machine
// contexts.)
//
// Purpose
//   Let one call cancel a whole tree of work, and let every blocking call
//   that was given a context return once it is done, without the caller
//   closing anything.
//
// Design
//   * A context is a handle on a ctx_node (null: background). Each node
//     holds a handle on its parent and sits in the parent's list of
//     children; cancelling a node marks it done and cancels its subtree,
//     top-down under the nodes' locks (Go's cancelCtx.cancel).
//   * done() is a chan<monostate>, made on first use (a context nobody
//     selects on never allocates one), closed when the node becomes done.
//   * A blocking call registers a ctx_hook (context_tree.hpp) while it
//     waits. Becoming done fires every hook of the node under its lock, so
//     ctx_unwatch (same lock) waits out a hook that is running, and a hook
//     never touches a call that has returned.
//   * A node with its own deadline (earlier than its parent's) has a timer
//     on the runtime's heap, whose callback (under the timers lock) cancels
//     the subtree with deadline_exceeded. A node whose deadline comes from
//     an ancestor has no timer: `clock` points at the ancestor's node.
//   * Two counts. `handles`: context objects and child nodes; the last one
//     going stops the timer and unlinks the node from its parent, since
//     nobody can observe it any more, so an abandoned per-request
//     with_timeout(30s) leaves nothing queued behind. `mem`: one for all
//     the handles plus one while the timer is queued; it keeps the memory
//     for a timer callback or a run's disposal already under way.
//     Rejected: std::shared_ptr (one count: a queued timer would keep each
//     abandoned context, and a pending timer, for its whole timeout).
//   * err() also compares the deadline with the clock, so it reports
//     deadline_exceeded as soon as the deadline has passed, before the
//     timer has run or with no runtime to run it; cancel() after that
//     point records deadline_exceeded too (X1).
//
// Invariants
//   X1  err is 0 until the node is done and then never changes. It is
//       stored under lk (release; read lock-free with acquire) before
//       done() is closed, the hooks fire and the children are cancelled.
//       Once the deadline has passed, the stored reason is
//       deadline_exceeded, so err() never changes its answer.
//   X2  A hook is linked iff it is in its node's list (both under lk). A
//       done node's list is empty: becoming done fires and unlinks them
//       all, and ctx_watch refuses a done node.
//   X3  A child is in its parent's list iff in_parent (parent's lk), from
//       creation until its last handle goes; while it exists it holds a
//       handle on its parent (so a parent's timer outlives its children).
//   X4  tm is queued (timers.hpp T1) only in the heap of run `timer_run`,
//       and then mem counts it. It is armed under the timers lock, at most
//       once per run; a run's end disposes of it (dispose drops the count).
//
// Lock order: timers lock < node lk (parent before child) < channel lock
//   < scheduler locks (hooks ready fibers). Nothing takes the timers lock
//   while holding a node's lock.

#include "runtime/context_tree.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "runtime/debug_internal.hpp"
#include "runtime/scheduler.hpp"
#include "weft/sync.hpp"
#include "weft/time.hpp"

namespace weft {
namespace detail {

constexpr std::uint8_t err_none = 0;
constexpr std::uint8_t err_canceled = 1;
constexpr std::uint8_t err_deadline = 2;
constexpr std::int64_t never = INT64_MAX;

struct ctx_node {
  std::atomic<std::uint32_t> handles{1};  // relaxed increments, acq_rel decrements
  std::atomic<std::uint32_t> mem{1};      // likewise (X4)
  spinlock lk;
  std::atomic<std::uint8_t> err{err_none};  // X1
  // in_parent, sib_prev, sib_next: guarded by parent->lk. Not annotated:
  // the code reaches that lock through a sibling or a local copy of
  // `parent`, which the analysis cannot prove is the same lock.
  bool in_parent = false;         // X3
  bool own_timer = false;         // immutable: this node's deadline is its own
  ctx_node* parent = nullptr;     // immutable
  ctx_node* clock = nullptr;      // immutable: the node whose timer ends this one
  std::int64_t deadline = never;  // immutable: steady_clock ns
  // Children, linked through sib_prev/sib_next; guarded by this node's lk.
  ctx_node* children WEFT_GUARDED_BY(lk) = nullptr;
  ctx_node* sib_prev = nullptr;
  ctx_node* sib_next = nullptr;
  ctx_hook* hooks WEFT_GUARDED_BY(lk) = nullptr;  // X2
  std::optional<chan<std::monostate>> done WEFT_GUARDED_BY(lk);
  timer tm;                                 // guarded by the timers lock (X4)
  std::atomic<std::uint64_t> timer_run{0};  // written under the timers lock; read as a hint
};

struct ctx_access {
  static ctx_node* node(const context& c) noexcept { return c.n_; }
  static context adopt(ctx_node* n) noexcept {
    context c;
    c.n_ = n;
    return c;
  }
};

namespace {

std::error_code code_of(std::uint8_t e) noexcept {
  if (e == err_none) return {};
  return make_error_code(e == err_canceled ? weft::errc::canceled : weft::errc::deadline_exceeded);
}

void mem_release(ctx_node* n) noexcept {
  // acq_rel: the last one out frees, after every other owner's accesses.
  if (n->mem.fetch_sub(1, std::memory_order_acq_rel) == 1) delete n;
}

// cancel_tree: make n and its subtree done (X1, X2). The caller holds
// n's parent's lock, or no node lock.
void cancel_tree(ctx_node* n, std::uint8_t why) noexcept {
  n->lk.lock();
  if (n->err.load(std::memory_order_relaxed) != err_none) {
    n->lk.unlock();
    return;
  }
  std::uint8_t e = why;
  if (e == err_canceled && n->deadline != never && now_ns() >= n->deadline) e = err_deadline;
  n->err.store(e, std::memory_order_release);  // X1; pairs with the acquire in err()
  if (n->done) n->done->close();
  while (ctx_hook* h = n->hooks) {
    n->hooks = h->next;
    if (h->next != nullptr) h->next->prev = nullptr;
    h->linked = false;
    h->fire(h);
  }
  for (ctx_node* c = n->children; c != nullptr; c = c->sib_next) cancel_tree(c, e);
  n->lk.unlock();
}

void deadline_fired(timer* t) {
  auto* n = static_cast<ctx_node*>(t->arg);
  cancel_tree(n, err_deadline);
  mem_release(n);  // X4: the heap's count
}

void deadline_disposed(timer* t) { mem_release(static_cast<ctx_node*>(t->arg)); }

// arm: queue n's timer in the running run's heap unless it is there
// already or fired in this run (X4). Does nothing without a runtime.
void arm(ctx_node* n) {
  if (n->err.load(std::memory_order_acquire) != err_none) return;
  timer_pin pin;
  if (!pin.ok()) return;
  const std::uint64_t run = g_sched->dl.run_epoch;
  if (n->timer_run.load(std::memory_order_relaxed) == run) return;
  timer_service::locked timers(g_timers);
  if (n->timer_run.load(std::memory_order_relaxed) == run) return;
  if (n->tm.index == timer::npos) {
    n->tm.when = n->deadline;
    n->tm.period = 0;
    n->tm.fire = &deadline_fired;
    n->tm.dispose = &deadline_disposed;
    n->tm.arg = n;
    timers.add(&n->tm);
    n->mem.fetch_add(1, std::memory_order_relaxed);  // X4
  }
  n->timer_run.store(run, std::memory_order_relaxed);
}

// stop_timer: take n's timer out of the heap if it is queued there.
void stop_timer(ctx_node* n) noexcept {
  timer_pin pin;
  if (!pin.ok()) return;  // no runtime, or one shutting down: its disposal drops the count
  if (g_timers.cancel(&n->tm)) mem_release(n);  // X4; not the last: the caller holds a count
}

void handle_release(ctx_node* n) noexcept {
  // acq_rel: the last handle's cleanup sees every other handle's accesses.
  if (n->handles.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (n->own_timer) stop_timer(n);
  if (ctx_node* p = n->parent) {
    p->lk.lock();
    if (n->in_parent) {  // X3
      if (n->sib_prev != nullptr) {
        n->sib_prev->sib_next = n->sib_next;
      } else {
        p->children = n->sib_next;
      }
      if (n->sib_next != nullptr) n->sib_next->sib_prev = n->sib_prev;
      n->in_parent = false;
    }
    p->lk.unlock();
    handle_release(p);
  }
  mem_release(n);
}

std::uint8_t err_of(const ctx_node* n) noexcept {
  const std::uint8_t e = n->err.load(std::memory_order_acquire);  // X1
  if (e != err_none) return e;
  return n->deadline != never && now_ns() >= n->deadline ? err_deadline : err_none;
}

context make_child(const context& parent, std::int64_t own_deadline) {
  ctx_node* p = ctx_access::node(parent);
  auto* n = new ctx_node();
  if (p != nullptr && p->deadline <= own_deadline) {
    n->deadline = p->deadline;
    n->clock = p->clock;
  } else if (own_deadline != never) {
    n->deadline = own_deadline;
    n->own_timer = true;
    n->clock = n;
  }
  context result = ctx_access::adopt(n);
  // Nobody else can see n until it is linked to its parent.
  if (n->deadline != never && now_ns() >= n->deadline) {
    n->err.store(err_deadline, std::memory_order_relaxed);  // expired already: no timer
  }
  if (p != nullptr) {
    p->handles.fetch_add(1, std::memory_order_relaxed);  // X3
    n->parent = p;
    p->lk.lock();
    const std::uint8_t inherited = p->err.load(std::memory_order_relaxed);
    if (inherited != err_none) {
      if (n->err.load(std::memory_order_relaxed) == err_none) {
        n->err.store(inherited, std::memory_order_relaxed);
      }
    } else if (n->err.load(std::memory_order_relaxed) == err_none) {
      n->sib_next = p->children;
      if (p->children != nullptr) p->children->sib_prev = n;
      p->children = n;
      n->in_parent = true;
    }
    p->lk.unlock();
  }
  if (n->own_timer) arm(n);  // does nothing once n is done
  return result;
}

// sleeper: a fiber sleeping with a context. Both the timer and the hook
// call wake(); `st` makes sure exactly one of them unparks the fiber, and
// only once it has parked (the commit runs after its context is saved).
struct sleeper {
  static constexpr std::uint32_t running = 0, woken_early = 1, parked = 2, woken = 3;
  ctx_hook hook;
  timer tm;
  waiter w;
  std::atomic<std::uint32_t> st{running};

  void wake() noexcept {
    std::uint32_t v = st.load(std::memory_order_acquire);
    for (;;) {
      // acq_rel: the resumed fiber sees what the waker did before.
      if (v == running) {
        if (st.compare_exchange_weak(v, woken_early, std::memory_order_acq_rel)) return;
      } else if (v == parked) {
        if (st.compare_exchange_weak(v, woken, std::memory_order_acq_rel)) {
          unpark(w);
          return;
        }
      } else {
        return;  // the other one won
      }
    }
  }
  // commit: the park's release function. A wake that came first left
  // woken_early, and nobody else will unpark us: resume at once.
  static void commit(void* p) {
    auto* s = static_cast<sleeper*>(p);
    std::uint32_t v = running;
    if (!s->st.compare_exchange_strong(v, parked, std::memory_order_acq_rel)) unpark(s->w);
  }
};

// fiber_sleep: the calling fiber, bound to `s.w` already.
void fiber_sleep(const context& ctx, std::int64_t when, sleeper& s) {
  s.hook.arg = &s;
  s.hook.fire = [](ctx_hook* h) noexcept { static_cast<sleeper*>(h->arg)->wake(); };
  if (ctx_watch(ctx, s.hook)) return;  // done already: the caller reports it
  s.tm.when = when;
  s.tm.arg = &s;
  s.tm.fire = [](timer* t) { static_cast<sleeper*>(t->arg)->wake(); };
  // Neither may outlive this frame, also when the fiber is unwound.
  struct leave {
    sleeper& s;
    const context& ctx;
    ~leave() {
      g_timers.cancel(&s.tm);
      ctx_unwatch(ctx, s.hook);
    }
  } l{s, ctx};
  g_timers.add(&s.tm);
  park(s.w, &sleeper::commit, &s, wait_reason::sleep, &s.tm, when);
}

// thread_sleep: a plain thread (or a fiber inside weft::blocking) sleeping
// with a context: the hook notifies a condition variable.
void thread_sleep(const context& ctx, std::int64_t when) {
  struct thread_sleeper {
    ctx_hook hook;
    std::mutex m;
    std::condition_variable cv;
    bool fired = false;
  } s;
  s.hook.arg = &s;
  s.hook.fire = [](ctx_hook* h) noexcept {
    auto* t = static_cast<thread_sleeper*>(h->arg);
    {
      std::lock_guard<std::mutex> g(t->m);
      t->fired = true;
    }
    t->cv.notify_one();
  };
  if (ctx_watch(ctx, s.hook)) return;
  const std::int64_t until = std::min(when, ctx_deadline_ns(ctx));
  {
    std::unique_lock<std::mutex> lk(s.m);
    for (;;) {
      if (s.fired) break;
      if (until == never) {
        s.cv.wait(lk);
        continue;
      }
      const std::int64_t now = now_ns();
      if (now >= until) break;
      s.cv.wait_for(lk, std::chrono::nanoseconds(until - now));
    }
  }
  ctx_unwatch(ctx, s.hook);
}

}  // namespace

std::error_code ctx_watch(const context& ctx, ctx_hook& h) {
  ctx_node* n = ctx_access::node(ctx);
  if (n == nullptr) return {};
  if (n->clock != nullptr) arm(n->clock);  // made outside this run: start its timer
  n->lk.lock();
  const std::uint8_t e = err_of(n);
  if (e == err_none) {
    h.prev = nullptr;
    h.next = n->hooks;
    if (n->hooks != nullptr) n->hooks->prev = &h;
    n->hooks = &h;
    h.linked = true;
  }
  n->lk.unlock();
  return code_of(e);
}

void ctx_unwatch(const context& ctx, ctx_hook& h) noexcept {
  ctx_node* n = ctx_access::node(ctx);
  if (n == nullptr) return;
  n->lk.lock();
  if (h.linked) {  // X2
    if (h.prev != nullptr) {
      h.prev->next = h.next;
    } else {
      n->hooks = h.next;
    }
    if (h.next != nullptr) h.next->prev = h.prev;
    h.linked = false;
  }
  n->lk.unlock();
}

std::int64_t ctx_deadline_ns(const context& ctx) noexcept {
  const ctx_node* n = ctx_access::node(ctx);
  return n == nullptr ? never : n->deadline;
}

bool ctx_is_background(const context& ctx) noexcept { return ctx_access::node(ctx) == nullptr; }

}  // namespace detail

// ---- context ----

context::context(const context& other) noexcept : n_(other.n_) {
  if (n_ != nullptr) n_->handles.fetch_add(1, std::memory_order_relaxed);
}

context& context::operator=(const context& other) noexcept {
  if (other.n_ != nullptr) other.n_->handles.fetch_add(1, std::memory_order_relaxed);
  if (n_ != nullptr) detail::handle_release(n_);
  n_ = other.n_;
  return *this;
}

context& context::operator=(context&& other) noexcept {
  if (this != &other) {
    if (n_ != nullptr) detail::handle_release(n_);
    n_ = other.n_;
    other.n_ = nullptr;
  }
  return *this;
}

context::~context() {
  if (n_ != nullptr) detail::handle_release(n_);
}

chan<std::monostate> context::done() const {
  if (n_ == nullptr) return chan<std::monostate>::nil();
  if (n_->clock != nullptr) detail::arm(n_->clock);
  n_->lk.lock();
  if (n_->done) {
    chan<std::monostate> c = *n_->done;
    n_->lk.unlock();
    return c;
  }
  n_->lk.unlock();
  chan<std::monostate> fresh;  // allocated outside the lock
  n_->lk.lock();
  if (!n_->done) {
    n_->done = fresh;
    if (n_->err.load(std::memory_order_relaxed) != detail::err_none) fresh.close();
  }
  chan<std::monostate> c = *n_->done;
  n_->lk.unlock();
  return c;
}

std::error_code context::err() const noexcept {
  return n_ == nullptr ? std::error_code() : detail::code_of(detail::err_of(n_));
}

std::optional<std::chrono::steady_clock::time_point> context::deadline() const noexcept {
  if (n_ == nullptr || n_->deadline == detail::never) return std::nullopt;
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::nanoseconds(n_->deadline)));
}

void context::cancel() const noexcept {
  if (n_ == nullptr) return;
  detail::cancel_tree(n_, detail::err_canceled);
  if (n_->own_timer) detail::stop_timer(n_);  // no need to keep it queued
}

context with_cancel(const context& parent) { return detail::make_child(parent, detail::never); }

context with_deadline(const context& parent, std::chrono::steady_clock::time_point d) {
  const std::int64_t ns =
      d == std::chrono::steady_clock::time_point::max() ? detail::never : detail::steady_ns(d);
  return detail::make_child(parent, ns);
}

void sleep_until(const context& ctx, std::chrono::steady_clock::time_point t, std::error_code& ec) {
  ec.clear();
  if (detail::ctx_is_background(ctx)) {
    weft::sleep_until(t);
    return;
  }
  ec = ctx.err();
  if (ec) return;
  const std::int64_t when =
      t == std::chrono::steady_clock::time_point::max() ? detail::never : detail::steady_ns(t);
  if (when <= detail::now_ns()) return;
  detail::sleeper s;
  s.w.prepare();
  if (s.w.fiber_ != nullptr) {
    detail::fiber_sleep(ctx, when, s);
  } else {
    detail::thread_sleep(ctx, when);
  }
  if (detail::now_ns() < when) ec = ctx.err();
}

void sleep_until(const context& ctx, std::chrono::steady_clock::time_point t) {
  std::error_code ec;
  sleep_until(ctx, t, ec);
  if (ec) throw std::system_error(ec, "weft::sleep_until");
}

}  // namespace weft
