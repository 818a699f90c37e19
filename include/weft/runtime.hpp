#pragma once
// weft/runtime.hpp: start the runtime, start fibers, yield.
//
// docs/REFERENCE.md "Runtime" describes all of it. Two places where the C++ spelling
// differs from a plain function template, both invisible at the call site:
//
//  * `weft::go` is a set of function templates, one per number of
//    arguments after the callable (up to eight), each ending in a defaulted
//    `std::source_location` parameter, so every fiber knows the file and line
//    that started it (a defaulted parameter cannot follow a parameter pack).
//    Every spelling is a plain call: `weft::go(task);`, `weft::go(f, a, b);`,
//    `weft::go([&] { ... });`, `weft::go(std::move(job));`. Pass more
//    arguments through a lambda. Taking `&weft::go` is not supported.
//  * `weft::run` takes an extra defaulted `std::source_location` after
//    `options`; it names the main fiber's start site in dumps and reports.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

#include "weft/detail/source_location.hpp"

namespace weft {

// options: how `run` sizes and tunes the runtime. Fields left at zero take
// the defaults described beside them.
struct options {
  // Processors (Go's GOMAXPROCS). 0 = the environment variable WEFT_WORKERS
  // if set, else std::thread::hardware_concurrency(). At most 1024.
  unsigned workers = 0;
  // Usable bytes per fiber stack, rounded up to whole pages. 0 = 64 KiB.
  // At least one page, at most 1 GiB.
  std::size_t stack_size = 0;
  // A worker inside weft::blocking() longer than this loses its run queue to
  // another thread. Must be positive; beyond about 146 years it saturates
  // (never hands off).
  std::chrono::microseconds blocking_handoff{20};
  // A fiber that runs this long without parking or yielding: its worker's run
  // queue is handed off, and a warning is printed once it has also used this
  // much CPU time, and at least 50 ms, since half-way. Must be positive;
  // beyond about 146 years it saturates (never).
  std::chrono::milliseconds hog_handoff{10};
};

namespace detail {

struct fiber;

// A fiber's entry point, type-erased. `run` invokes the closure and then
// destroys it (also when it throws); `drop` destroys it without running it
// (a fiber that never started when the runtime shut down).
struct closure_ops {
  void (*run)(void* closure);
  void (*drop)(void* closure) noexcept;
};

// allocate_fiber: a fiber record with `size` bytes of `align`ed closure
// storage (inline in the record when it fits, else on the heap). Throws
// std::logic_error when no runtime is running or it is shutting down.
// Callable from fibers and from any thread.
fiber* allocate_fiber(std::size_t size, std::size_t align, void** storage);
// launch_fiber: make a fiber whose closure has been constructed runnable.
void launch_fiber(fiber* f, const closure_ops* ops, const char* file, unsigned line) noexcept;
// discard_fiber: return a record whose closure could not be constructed.
void discard_fiber(fiber* f) noexcept;

// run_main: the body of weft::run. `main_fn` is called on the first fiber
// and its result becomes run's result.
int run_main(int (*main_fn)(void*), void* arg, const options& opts, const char* file,
             unsigned line);

template <class Closure>
struct closure_traits {
  static void run(void* p) {
    auto* c = static_cast<Closure*>(p);
    struct destroy_on_exit {
      Closure* c;
      ~destroy_on_exit() { c->~Closure(); }
    } guard{c};
    std::apply([](auto& fn, auto&... args) { std::invoke(std::move(fn), std::move(args)...); }, *c);
  }
  static void drop(void* p) noexcept { static_cast<Closure*>(p)->~Closure(); }
  static constexpr closure_ops ops{&run, &drop};
};

}  // namespace detail

namespace detail {

// go_site: go()'s last, defaulted parameter: the caller's file and line.
// A type of its own, so that a std::source_location passed on to the fiber
// is taken as an argument, never as the site.
struct go_site {
  go_site(source_location l) noexcept : loc(l) {}  // implicit: the default argument
  source_location loc;
};

// spawn: go() with its site. The closure holds decayed copies of f and
// args, as std::thread's does, and calls f(std::move(args)...).
template <class F, class... Args>
void spawn(const source_location& loc, F&& f, Args&&... args) {
  constexpr bool move_only_lvalue =
      ((std::is_lvalue_reference_v<Args> && !std::is_copy_constructible_v<std::decay_t<Args>> &&
        std::is_move_constructible_v<std::decay_t<Args>>) ||
       ...) ||
      (std::is_lvalue_reference_v<F> && !std::is_copy_constructible_v<std::decay_t<F>> &&
       std::is_move_constructible_v<std::decay_t<F>>);
  static_assert(!move_only_lvalue,
                "weft::go copies its arguments into the fiber, and a move-only lvalue cannot be "
                "copied: pass it with std::move, e.g. weft::go(serve, std::move(c))");
  constexpr bool decay_copyable = std::is_constructible_v<std::decay_t<F>, F> &&
                                  (std::is_constructible_v<std::decay_t<Args>, Args> && ...);
  static_assert(move_only_lvalue || decay_copyable,
                "weft::go: f and every argument must be copyable or movable into the fiber");
  constexpr bool invocable = std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>;
  static_assert(!decay_copyable || invocable,
                "weft::go: f(args...) must be callable with the decayed arguments, as rvalues");
  if constexpr (decay_copyable && invocable) {
    using closure = std::tuple<std::decay_t<F>, std::decay_t<Args>...>;
    void* storage = nullptr;
    fiber* fb = allocate_fiber(sizeof(closure), alignof(closure), &storage);
    try {
      ::new (storage) closure(std::forward<F>(f), std::forward<Args>(args)...);
    } catch (...) {
      discard_fiber(fb);
      throw;
    }
    launch_fiber(fb, &closure_traits<closure>::ops, loc.file_name(), loc.line());
  }
}

}  // namespace detail

// go: start a fiber running f(args...), with f and args decay-copied as by
// std::thread (pass a move-only lvalue with std::move; a reference with
// std::ref). Callable from any fiber, and from any thread while a runtime
// is running (then the fiber is queued globally). Throws std::logic_error
// when no runtime is running, or from a non-fiber thread once shutdown has
// begun. Called by a fiber that the runtime unwinds at shutdown (from a
// destructor), it returns normally and the new fiber never runs: its
// closure is destroyed unrun, like any fiber that never started. An
// exception escaping the fiber prints
// `weft: fiber <id> (started at <file>:<line>) terminated by exception: ...`
// and calls std::terminate, like an unrecovered panic in Go. The file and
// line are go()'s caller's; up to eight arguments follow f.
template <class F>
void go(F&& f, detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f));
}
template <class F, class A1>
void go(F&& f, A1&& a1, detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1));
}
template <class F, class A1, class A2>
void go(F&& f, A1&& a1, A2&& a2, detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
}
template <class F, class A1, class A2, class A3>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3));
}
template <class F, class A1, class A2, class A3, class A4>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3), std::forward<A4>(a4));
}
template <class F, class A1, class A2, class A3, class A4, class A5>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5));
}
template <class F, class A1, class A2, class A3, class A4, class A5, class A6>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5),
                std::forward<A6>(a6));
}
template <class F, class A1, class A2, class A3, class A4, class A5, class A6, class A7>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6, A7&& a7,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5),
                std::forward<A6>(a6), std::forward<A7>(a7));
}
template <class F, class A1, class A2, class A3, class A4, class A5, class A6, class A7, class A8>
void go(F&& f, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6, A7&& a7, A8&& a8,
        detail::go_site site = detail::source_location::current()) {
  detail::spawn(site.loc, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                std::forward<A3>(a3), std::forward<A4>(a4), std::forward<A5>(a5),
                std::forward<A6>(a6), std::forward<A7>(a7), std::forward<A8>(a8));
}

// run: start the runtime, run main_fn as the first fiber, and return when it
// returns: its result if it returns int, else 0. Then every fiber still
// alive is unwound, all runtime threads are joined and all runtime memory is
// released; run may be called again afterwards. An exception escaping
// main_fn is rethrown after shutdown. Throws std::logic_error if a runtime
// is already running in this process, std::invalid_argument for bad options.
template <class F>
int run(F&& main_fn, options opts = {},
        detail::source_location loc = detail::source_location::current()) {
  using fn_t = std::remove_reference_t<F>;
  auto thunk = [](void* p) -> int {
    fn_t& fn = *static_cast<fn_t*>(p);
    if constexpr (std::is_same_v<std::invoke_result_t<fn_t&>, int>) {
      return std::invoke(fn);
    } else {
      std::invoke(fn);
      return 0;
    }
  };
  return detail::run_main(thunk, static_cast<void*>(std::addressof(main_fn)), opts, loc.file_name(),
                          loc.line());
}

// yield: let other runnable fibers run; the caller stays runnable. Outside a
// fiber it yields the OS thread. In a destructor that runs while the
// runtime unwinds the calling fiber at shutdown it returns at once (no
// other fiber runs then).
void yield();

// this_fiber_id: the running fiber's id; 0 outside a fiber. Ids are unique
// for the life of the process (not reused across runs).
std::uint64_t this_fiber_id() noexcept;

// in_fiber: true when called on a fiber of the running runtime.
bool in_fiber() noexcept;

}  // namespace weft
