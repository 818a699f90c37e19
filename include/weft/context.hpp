#pragma once
// weft/context.hpp: cancellation and deadlines across API boundaries (Go's
// context package).
//
//   weft::context ctx = weft::with_timeout(parent, 2s);
//   std::string_view line = reader.read_line(ctx, ec);   // fails once ctx is done
//   weft::select(weft::recv_case(ctx.done()), weft::recv_case(work));
//
// A context is a shared handle, like a chan: copies refer to the same
// context; a default-constructed or moved-from one is background(). Contexts
// form a tree: cancelling one cancels everything derived from it, never its
// parent. A context is *done* once it is cancelled or its deadline passed;
// then done() is closed and err() says why. Done is final.
//
// Blocking calls that take a context (weft::net's dial, accept, read,
// write, wait_readable/wait_writable, the buffered reader and writer, and
// sleep_for/sleep_until below) return as soon as it is done, with err():
// nobody has to close a connection to stop a fiber blocked in it. A call
// given a context that is done already fails at once, even if it could
// complete. After such a failure the connection stays usable; a write may
// have sent part of its data.
//
// Differences from Go, for C++:
//   * cancel() is a member, and releasing resources needs no call: the
//     last handle of a context going away stops its timer and detaches it
//     from its parent (Go's "defer cancel()" is not needed, but harmless).
//     Anyone holding a handle can cancel it, so hand out a derived context
//     (with_cancel) where a callee must not cancel yours.
//   * No Value(): pass request-scoped data as arguments.
//   * err() is a std::error_code: {} while not done, then weft::errc::canceled
//     or weft::errc::deadline_exceeded (equal to std::errc::operation_canceled
//     and std::errc::timed_out).
//
// Threads and runs: contexts work from fibers and plain threads. A deadline
// is enforced by the running runtime's timers (done() closes, blocked calls
// wake); err() reports deadline_exceeded once the deadline has passed in any
// case, and a context made outside a run starts its timer in the first run
// that waits on it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <system_error>
#include <variant>

#include "weft/chan.hpp"
#include "weft/detail/cxx20.hpp"
#include "weft/error.hpp"

namespace weft {

namespace detail {
struct ctx_node;
struct ctx_access;
}  // namespace detail

class context {
 public:
  // context(): background(), never done.
  context() noexcept = default;
  context(const context& other) noexcept;
  context(context&& other) noexcept : n_(other.n_) { other.n_ = nullptr; }
  context& operator=(const context& other) noexcept;
  context& operator=(context&& other) noexcept;
  ~context();

  // done: a channel that is closed when the context is done (receive or
  // select on it). The nil channel for background(), which never is.
  chan<std::monostate> done() const;
  // err: {} while not done; then why (weft::errc::canceled or
  // weft::errc::deadline_exceeded), the same from every call.
  std::error_code err() const noexcept;
  // deadline: when the context will be done by itself, if ever (its own
  // deadline or an ancestor's, whichever is earlier).
  std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;
  // cancel: make the context and every context derived from it done with
  // weft::errc::canceled; wakes every call blocked on them. Idempotent; does
  // nothing to background() or to a context already done. From any fiber
  // or thread.
  void cancel() const noexcept;

 private:
  friend struct detail::ctx_access;
  detail::ctx_node* n_ = nullptr;
};

// background: the root context, never done (Go's context.Background()).
inline context background() noexcept { return context(); }

// with_cancel: a child of `parent`, done when cancel() is called on it or
// when `parent` is done (then with the parent's err()).
context with_cancel(const context& parent);

// with_deadline: a child of `parent` that is also done, with
// deadline_exceeded, at `d` (at once if `d` has passed). A parent deadline
// earlier than `d` stays in force.
context with_deadline(const context& parent, std::chrono::steady_clock::time_point d);

// with_timeout: with_deadline(parent, now + d).
template <class Rep, class Period>
context with_timeout(const context& parent, const std::chrono::duration<Rep, Period>& d) {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (d <= duration<Rep, Period>::zero()) return with_deadline(parent, now);
  if (d >= duration_cast<duration<Rep, Period>>(steady_clock::time_point::max() - now)) {
    return with_deadline(parent, steady_clock::time_point::max());
  }
  return with_deadline(parent, now + ceil<steady_clock::duration>(d));
}

// sleep_until / sleep_for with a context: sleep as weft::sleep_until does,
// but return early once `ctx` is done. The throwing forms throw
// std::system_error carrying ctx.err(); the others set `ec` to it (and clear
// it when the sleep completed).
void sleep_until(const context& ctx, std::chrono::steady_clock::time_point t);
void sleep_until(const context& ctx, std::chrono::steady_clock::time_point t, std::error_code& ec);

template <class Rep, class Period>
void sleep_for(const context& ctx, const std::chrono::duration<Rep, Period>& d,
               std::error_code& ec) {
  using namespace std::chrono;
  ec.clear();
  const auto now = steady_clock::now();
  if (d <= duration<Rep, Period>::zero()) {
    ec = ctx.err();
  } else if (d >= duration_cast<duration<Rep, Period>>(steady_clock::time_point::max() - now)) {
    sleep_until(ctx, steady_clock::time_point::max(), ec);
  } else {
    sleep_until(ctx, now + ceil<steady_clock::duration>(d), ec);
  }
}

template <class Rep, class Period>
void sleep_for(const context& ctx, const std::chrono::duration<Rep, Period>& d) {
  std::error_code ec;
  sleep_for(ctx, d, ec);
  if (ec) throw std::system_error(ec, "weft::sleep_for");
}

}  // namespace weft
