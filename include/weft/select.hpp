#pragma once
// weft/select.hpp: Go's select statement.
//
//   std::size_t i = weft::select(
//       weft::recv_case(in, [&](std::optional<int> v) { ... }),   // nullopt: `in` is closed
//       weft::send_case(out, 42, [&] { ... }),
//       weft::recv_case(weft::after(100ms), [&](auto) { ... }),  // a timeout is a receive
//       weft::default_case([&] { ... }));                         // optional: never block
//
// select blocks until one case can proceed, performs exactly that one
// operation, runs its handler (if given) and returns the case's zero-based
// position among the arguments. When several cases are ready, each is
// chosen with equal probability. With a default_case it returns at once
// (with the default's index) if no other case is ready. Nil channels are
// never ready; select() with no cases, or only nil channels and no
// default, blocks forever (Go's `select {}`). A send_case chosen on a
// closed channel throws closed_channel("send on closed channel"), as send
// does. The same channel may appear in several cases.
//
// Cases are built for the select call they are passed to. A case made from
// a chan lvalue refers to that handle (no copy, no reference-count
// traffic), so the handle must outlive the select call, as with any
// by-reference argument; a case made from a chan rvalue (e.g. after(...))
// owns it. A send_case converts its value to T when it is made (an lvalue
// is copied, an rvalue moved); the value of a case that is not chosen is
// destroyed unsent. Handlers run after the operation, with no lock held;
// an exception from a handler propagates out of select.
// Works from fibers and from plain OS threads, like chan's operations.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "weft/chan.hpp"

namespace weft {
namespace detail {

// case_ref: one channel case, type-erased for select_impl.
struct case_ref {
  chan_base* ch = nullptr;  // null: a nil channel, never ready
  void* slot = nullptr;     // receive: std::optional<stored>*; send: stored*
  // One attempt under ch->lock (chan_state::try_recv / try_send).
  op_result (*attempt)(chan_base* ch, void* slot, chan_node*& wake) noexcept = nullptr;
  bool is_send = false;
};

// Scratch space select_impl needs per channel case, sized by the caller.
struct select_scratch {
  std::uint32_t* order;  // [n]: the poll order
  chan_base** locks;     // [n]: the distinct channels, in address order
  chan_node* nodes;      // [n]: one node per case while blocked
};

struct select_outcome {
  std::size_t index;  // position in the case_ref array; n means "default"
  bool closed;        // the chosen case found its channel closed
};

// select_impl: the algorithm (runtime/select.cpp). n >= 1.
select_outcome select_impl(case_ref* cases, std::size_t n, bool has_default,
                           const select_scratch& scratch);

struct no_handler {};

template <class T>
struct case_ops {
  using stored = typename chan_traits<T>::stored;
  // recv, send: called through case_ref::attempt with ch->lock held, and
  // assert it (the analysis cannot see through the function pointer).
  static op_result recv(chan_base* ch, void* slot, chan_node*& wake) noexcept {
    ch->lock.assert_held();
    return static_cast<chan_state<T>*>(ch)->try_recv(*static_cast<std::optional<stored>*>(slot),
                                                     wake);
  }
  static op_result send(chan_base* ch, void* slot, chan_node*& wake) noexcept {
    ch->lock.assert_held();
    return static_cast<chan_state<T>*>(ch)->try_send(*static_cast<stored*>(slot), wake);
  }
};

// chan_holder: a case's channel: the caller's handle (by address) or an
// owned one (moved in).
template <class T, bool Owned>
struct chan_holder;
template <class T>
struct chan_holder<T, false> {
  const chan<T>* c;
  explicit chan_holder(const chan<T>& ch) noexcept : c(&ch) {}
  chan_state<T>* state() const noexcept { return chan_access::state(*c); }
};
template <class T>
struct chan_holder<T, true> {
  chan<T> c;
  explicit chan_holder(chan<T>&& ch) noexcept : c(std::move(ch)) {}
  chan_state<T>* state() const noexcept { return chan_access::state(c); }
};

template <class T, class F, bool Owned>
class recv_case_t {
  using stored = typename chan_traits<T>::stored;

 public:
  static constexpr bool is_default = false;
  template <class C, class G>
  recv_case_t(C&& c, G&& f) : ch_(std::forward<C>(c)), f_(std::forward<G>(f)) {}

  case_ref ref() noexcept {
    slot_.reset();
    return {ch_.state(), &slot_, &case_ops<T>::recv, false};
  }
  void finish(bool) {
    if constexpr (!std::is_same_v<F, no_handler>) {
      std::invoke(f_, chan_traits<T>::unbox(std::move(slot_)));
    }
  }

 private:
  chan_holder<T, Owned> ch_;
  F f_;
  std::optional<stored> slot_;
};

template <class T, class F, bool Owned>
class send_case_t {
  using stored = typename chan_traits<T>::stored;

 public:
  static constexpr bool is_default = false;
  template <class C, class U, class G>
  send_case_t(C&& c, U&& v, G&& f)
      : ch_(std::forward<C>(c)),
        value_(chan_traits<T>::make(std::forward<U>(v))),
        f_(std::forward<G>(f)) {}

  case_ref ref() noexcept { return {ch_.state(), &value_, &case_ops<T>::send, true}; }
  void finish(bool closed) {
    if (closed) throw_closed_channel("send on closed channel");
    if constexpr (!std::is_same_v<F, no_handler>) std::invoke(f_);
  }

 private:
  chan_holder<T, Owned> ch_;
  stored value_;
  F f_;
};

template <class F>
class default_case_t {
 public:
  static constexpr bool is_default = true;
  template <class G>
  explicit default_case_t(G&& f) : f_(std::forward<G>(f)) {}
  void finish(bool) {
    if constexpr (!std::is_same_v<F, no_handler>) std::invoke(f_);
  }

 private:
  F f_;
};

template <class C>
struct is_select_case : std::false_type {};
template <class T, class F, bool O>
struct is_select_case<recv_case_t<T, F, O>> : std::true_type {};
template <class T, class F, bool O>
struct is_select_case<send_case_t<T, F, O>> : std::true_type {};
template <class F>
struct is_select_case<default_case_t<F>> : std::true_type {};

template <class T, class F>
constexpr void check_recv_handler() {
  static_assert(std::is_same_v<F, no_handler> || std::is_invocable_v<F&, std::optional<T>>,
                "weft::recv_case: the handler must be callable as f(std::optional<T>)");
}
template <class F>
constexpr void check_plain_handler() {
  static_assert(std::is_same_v<F, no_handler> || std::is_invocable_v<F&>,
                "weft::send_case / default_case: the handler must be callable as f()");
}

}  // namespace detail

// recv_case: receive from c; f(std::optional<T>) gets the value, or
// std::nullopt if c is closed and drained. f is optional.
template <class T>
auto recv_case(const chan<T>& c) {
  return detail::recv_case_t<T, detail::no_handler, false>(c, detail::no_handler{});
}
template <class T, class F>
auto recv_case(const chan<T>& c, F&& f) {
  detail::check_recv_handler<T, std::decay_t<F>>();
  return detail::recv_case_t<T, std::decay_t<F>, false>(c, std::forward<F>(f));
}
template <class T>
auto recv_case(chan<T>&& c) {
  return detail::recv_case_t<T, detail::no_handler, true>(std::move(c), detail::no_handler{});
}
template <class T, class F>
auto recv_case(chan<T>&& c, F&& f) {
  detail::check_recv_handler<T, std::decay_t<F>>();
  return detail::recv_case_t<T, std::decay_t<F>, true>(std::move(c), std::forward<F>(f));
}

// send_case: send `value` (converted to T now) on c; f() runs once it is
// sent. f is optional.
template <class T, class U>
auto send_case(const chan<T>& c, U&& value) {
  static_assert(std::is_constructible_v<T, U&&>, "weft::send_case: the value must convert to T");
  return detail::send_case_t<T, detail::no_handler, false>(c, std::forward<U>(value),
                                                           detail::no_handler{});
}
template <class T, class U, class F>
auto send_case(const chan<T>& c, U&& value, F&& f) {
  static_assert(std::is_constructible_v<T, U&&>, "weft::send_case: the value must convert to T");
  detail::check_plain_handler<std::decay_t<F>>();
  return detail::send_case_t<T, std::decay_t<F>, false>(c, std::forward<U>(value),
                                                        std::forward<F>(f));
}
template <class T, class U>
auto send_case(chan<T>&& c, U&& value) {
  static_assert(std::is_constructible_v<T, U&&>, "weft::send_case: the value must convert to T");
  return detail::send_case_t<T, detail::no_handler, true>(std::move(c), std::forward<U>(value),
                                                          detail::no_handler{});
}
template <class T, class U, class F>
auto send_case(chan<T>&& c, U&& value, F&& f) {
  static_assert(std::is_constructible_v<T, U&&>, "weft::send_case: the value must convert to T");
  detail::check_plain_handler<std::decay_t<F>>();
  return detail::send_case_t<T, std::decay_t<F>, true>(std::move(c), std::forward<U>(value),
                                                       std::forward<F>(f));
}

// default_case: makes select non-blocking; f() runs if no other case was
// ready. f is optional.
inline auto default_case() {
  return detail::default_case_t<detail::no_handler>(detail::no_handler{});
}
template <class F>
auto default_case(F&& f) {
  detail::check_plain_handler<std::decay_t<F>>();
  return detail::default_case_t<std::decay_t<F>>(std::forward<F>(f));
}

// select: see the top of this file. Callable from fibers and plain threads.
template <class... Cases>
std::size_t select(Cases&&... cases) {
  detail::preempt_point();
  static_assert((detail::is_select_case<std::remove_cvref_t<Cases>>::value && ...),
                "weft::select: every argument must be a recv_case, send_case or default_case");
  constexpr std::size_t ndefault =
      (std::size_t{0} + ... + (std::remove_cvref_t<Cases>::is_default ? 1 : 0));
  static_assert(ndefault <= 1, "weft::select: at most one default_case");
  constexpr std::size_t nchan = sizeof...(Cases) - ndefault;

  if constexpr (sizeof...(Cases) == 0) {
    detail::park_forever(detail::wait_reason::select_forever);
  } else if constexpr (nchan == 0) {
    (cases.finish(false), ...);  // only the default
    return 0;
  } else {
    detail::case_ref refs[nchan];
    std::size_t arg_of[nchan];
    std::size_t default_arg = 0;
    {
      std::size_t k = 0, i = 0;
      (
          [&](auto& c) {
            if constexpr (std::remove_cvref_t<decltype(c)>::is_default) {
              default_arg = i;
            } else {
              refs[k] = c.ref();
              arg_of[k] = i;
              ++k;
            }
            ++i;
          }(cases),
          ...);
    }
    std::uint32_t order[nchan];
    detail::chan_base* locks[nchan];
    detail::chan_node nodes[nchan];
    const detail::select_outcome out =
        detail::select_impl(refs, nchan, ndefault != 0, {order, locks, nodes});
    const std::size_t chosen = out.index == nchan ? default_arg : arg_of[out.index];
    {
      std::size_t i = 0;
      ((i++ == chosen ? cases.finish(out.closed) : void()), ...);
    }
    return chosen;
  }
}

}  // namespace weft
