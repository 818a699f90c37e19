#pragma once
// weft/group.hpp: fibers working on one task, waited for together (Go's
// errgroup).
//
//   weft::group g(ctx);                       // g.ctx() derives from ctx
//   for (const auto& addr : replicas) {
//     g.go([&g, addr] { query(g.ctx(), addr); });
//   }
//   g.wait();   // all have finished; rethrows the first failure
//
// The first fiber to fail (throw, or return a non-zero std::error_code)
// cancels the group's context, so its siblings can stop early; wait()
// rethrows that first failure (a returned error_code as std::system_error)
// and drops the rest. wait() also cancels the context, as Go's Wait does.
//
// Structured: the destructor cancels the context and waits for fibers
// still running, so a group on the stack never leaves fibers behind that
// use its frame (fibers commonly capture by reference). Failures nobody
// wait()ed for are dropped.
//
// Exceptions caught by a group never reach std::terminate, unlike those
// escaping weft::go. The runtime's shutdown unwinding passes through.

#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include "weft/context.hpp"
#include "weft/detail/cxx20.hpp"
#include "weft/detail/source_location.hpp"
#include "weft/runtime.hpp"

namespace weft {

namespace detail {
struct group_state;
void group_fail(group_state& s, std::exception_ptr e) noexcept;
void group_done(group_state& s) noexcept;
// is_shutdown_unwind: inside a catch handler, whether the exception being
// handled is the runtime's shutdown unwinding (which must propagate).
bool is_shutdown_unwind() noexcept;

template <class Fn>
struct group_task {
  std::shared_ptr<group_state> st;
  Fn fn;

  group_task(std::shared_ptr<group_state> s, Fn&& f) : st(std::move(s)), fn(std::move(f)) {}
  group_task(std::shared_ptr<group_state> s, const Fn& f) : st(std::move(s)), fn(f) {}
  group_task(const group_task&) = delete;
  group_task& operator=(const group_task&) = delete;
  // Counts the fiber done whether it ran or was dropped unstarted.
  ~group_task() {
    if (st) group_done(*st);
  }

  void operator()() {
    try {
      if constexpr (std::is_convertible_v<std::invoke_result_t<Fn&>, std::error_code>) {
        const std::error_code ec = std::invoke(fn);
        if (ec) group_fail(*st, std::make_exception_ptr(std::system_error(ec, "weft::group")));
      } else {
        std::invoke(fn);
      }
    } catch (...) {
      if (is_shutdown_unwind()) throw;
      group_fail(*st, std::current_exception());
    }
  }

  static void run(void* p) {
    auto* t = static_cast<group_task*>(p);
    struct destroy_on_exit {
      group_task* t;
      ~destroy_on_exit() { t->~group_task(); }
    } guard{t};
    (*t)();
  }
  static void drop(void* p) noexcept { static_cast<group_task*>(p)->~group_task(); }
  static constexpr closure_ops ops{&run, &drop};
};
}  // namespace detail

class group {
 public:
  // group: a group whose context derives from `parent` (background() by
  // default).
  group();
  explicit group(const context& parent);
  group(const group&) = delete;
  group& operator=(const group&) = delete;
  ~group();

  // ctx: the group's context: done once a fiber failed, wait() returned, or
  // the parent is done.
  const context& ctx() const noexcept;

  // go: start a fiber running f() (decay-copied), as weft::go does. f may
  // return void or std::error_code. Throws std::logic_error where weft::go
  // does (no runtime running).
  template <class F>
  void go(F&& f, detail::source_location loc = detail::source_location::current()) {
    using task = detail::group_task<std::decay_t<F>>;
    static_assert(std::is_invocable_v<std::decay_t<F>&>, "weft::group::go: f() must be callable");
    void* storage = nullptr;
    detail::fiber* fb = detail::allocate_fiber(sizeof(task), alignof(task), &storage);
    add_one();
    try {
      ::new (storage) task(st_, std::forward<F>(f));
    } catch (...) {
      detail::group_done(*st_);
      detail::discard_fiber(fb);
      throw;
    }
    detail::launch_fiber(fb, &task::ops, loc.file_name(), loc.line());
  }

  // wait: block until every fiber started with go() has finished, cancel
  // the context, and rethrow the first failure if there was one (every
  // call rethrows it).
  void wait();

 private:
  void add_one();
  std::shared_ptr<detail::group_state> st_;
};

}  // namespace weft
