// net.cpp: weft::net (weft/net.hpp) on top of the netpoller (netpoll.cpp).
//
// Every operation follows one pattern: take a reference on the descriptor's
// record (which fails once it is closed: operation_canceled), take the
// direction's lock, then loop { check closing, context and deadline; try
// the system call; on EAGAIN netpoll_wait }. errno is read (last_errno) right after each
// failing call, before anything that can switch fibers.
//
// Errors travel as ints inside this file (op_err: an errno or a weft::errc
// negated) and become a std::error_code only at the API, when there is one:
// the error_code forms set it, the throwing forms throw it. listen and dial are the exception:
// parsing, resolution and each address's attempt throw (with messages naming the address), and
// their error_code forms catch std::system_error; their failures cost a system call or a name
// lookup anyway.
//
// Contexts (weft/context.hpp): an operation given a context that can be
// done registers a ctx_hook the first time it must wait. The hook sets the
// operation's interrupt flag and calls netpoll_interrupt, which wakes the
// fiber parked on the record (netpoll.cpp N5: the flag is stored before
// the slot is looked at, and re-checked by the waiter after it announces
// itself). Plain threads see the flag within netpoll_wait's 100 ms slice,
// and wait no longer than the context's deadline.

#include "weft/net.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "netpoll/address.hpp"
#include "netpoll/netpoll.hpp"
#include "runtime/context_tree.hpp"
#include "runtime/sys.hpp"
#include "runtime/timers.hpp"
#include "weft/context.hpp"

namespace weft {
namespace detail {

struct net_access {
  static net::conn conn(poll_desc* pd, std::uint32_t gen) noexcept { return net::conn(pd, gen); }
  static net::listener listener(poll_desc* pd, std::uint32_t gen) noexcept {
    return net::listener(pd, gen);
  }
  static poll_desc* pd(const net::conn& c) noexcept { return c.pd_; }
  static std::uint32_t gen(const net::conn& c) noexcept { return c.gen_; }
  static poll_desc* pd(const net::listener& l) noexcept { return l.pd_; }
  static std::uint32_t gen(const net::listener& l) noexcept { return l.gen_; }
};

namespace {

std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }

// op_err: an operation's outcome inside this file: 0, an errno, or a
// weft::errc negated. Only a failure becomes a std::error_code, at the API
// (building one costs a call into libstdc++, several per operation).
using op_err = int;
constexpr op_err op_ok = 0;

op_err from_code(const std::error_code& e) noexcept {
  if (!e) return op_ok;
  if (e.category() == weft::error_category()) return -e.value();
  return e.category() == std::generic_category() ? e.value() : EIO;
}

std::error_code to_code(op_err e) noexcept {
  return e > 0 ? errno_code(e) : make_error_code(static_cast<weft::errc>(-e));
}

// set_code: the error_code forms' result: cleared on success.
void set_code(std::error_code& ec, op_err e) noexcept {
  if (e != op_ok) {
    ec = to_code(e);
  } else {
    ec.clear();
  }
}
std::error_code canceled_code() noexcept {
  return std::make_error_code(std::errc::operation_canceled);
}
std::error_code timeout_code() noexcept { return std::make_error_code(std::errc::timed_out); }

[[noreturn]] void throw_errno(int e, const char* api) {
  throw std::system_error(e, std::generic_category(), api);
}
[[noreturn]] void throw_canceled(const char* api) { throw std::system_error(canceled_code(), api); }
[[noreturn]] void throw_timeout(const char* api) { throw std::system_error(timeout_code(), api); }

// dir_lock: holds a record's direction lock (poll_desc::lock).
class dir_lock {
 public:
  dir_lock(poll_desc& pd, int dir) : pd_(pd), dir_(dir) { pd_lock(pd, dir); }
  ~dir_lock() { pd_unlock(pd_, dir_); }
  dir_lock(const dir_lock&) = delete;
  dir_lock& operator=(const dir_lock&) = delete;

 private:
  poll_desc& pd_;
  int dir_;
};

// op_ref: one operation's reference on a record (netpoll.cpp N3); ok() is
// false when the record was closed (operation_canceled).
class op_ref {
 public:
  op_ref(poll_desc* pd, std::uint32_t gen) noexcept
      : pd_(pd != nullptr && pd_acquire(*pd, gen) ? pd : nullptr) {}
  ~op_ref() {
    if (pd_ != nullptr) pd_release(*pd_);
  }
  op_ref(const op_ref&) = delete;
  op_ref& operator=(const op_ref&) = delete;
  bool ok() const noexcept { return pd_ != nullptr; }
  poll_desc& pd() const noexcept { return *pd_; }

 private:
  poll_desc* pd_;
};

// ctx_wait: an operation's link to the context it was given (see the file
// head). The hook is registered the first time the operation must wait
// and removed by the destructor, before the direction lock is released,
// so it only ever interrupts this operation.
class ctx_wait {
 public:
  ctx_wait(const context* ctx, poll_desc& pd, int dir) noexcept
      : ctx_(ctx != nullptr && !ctx_is_background(*ctx) ? ctx : nullptr), pd_(pd), dir_(dir) {}
  ~ctx_wait() {
    if (watching_) ctx_unwatch(*ctx_, hook_);
  }
  ctx_wait(const ctx_wait&) = delete;
  ctx_wait& operator=(const ctx_wait&) = delete;

  // err: the context's error once it is done.
  op_err err() const noexcept { return ctx_ != nullptr ? from_code(ctx_->err()) : op_ok; }
  // before_wait: register the hook; the context's error if it is done.
  op_err before_wait() {
    if (ctx_ == nullptr || watching_) return err();
    hook_.arg = this;
    hook_.fire = [](ctx_hook* h) noexcept {
      auto* self = static_cast<ctx_wait*>(h->arg);
      self->fired_.store(true, std::memory_order_seq_cst);  // N5, before the slot
      netpoll_interrupt(self->pd_, self->dir_);
    };
    if (const std::error_code e = ctx_watch(*ctx_, hook_)) return from_code(e);
    watching_ = true;
    return op_ok;
  }
  const std::atomic<bool>* flag() const noexcept { return ctx_ != nullptr ? &fired_ : nullptr; }
  std::int64_t deadline() const noexcept {
    return ctx_ != nullptr ? ctx_deadline_ns(*ctx_) : no_deadline;
  }

 private:
  const context* ctx_;
  poll_desc& pd_;
  int dir_;
  bool watching_ = false;
  std::atomic<bool> fired_{false};
  ctx_hook hook_;
};

// wait_for: netpoll_wait on behalf of an operation, with its context.
// Failures to register with epoll (ENOMEM, ENOSPC) come back as codes.
[[gnu::always_inline]] inline op_err wait_for(poll_desc& pd, int dir, ctx_wait* cw,
                                              std::int64_t own_deadline, bool use_pd_deadline) {
  const std::atomic<bool>* flag = nullptr;
  if (cw != nullptr) {
    if (const op_err e = cw->before_wait()) return e;
    flag = cw->flag();
    // A plain thread is not woken by the hook: bound its wait instead.
    if (!in_parkable_fiber()) own_deadline = std::min(own_deadline, cw->deadline());
  }
  try {
    netpoll_wait(pd, dir, own_deadline, use_pd_deadline, flag);
  } catch (const std::system_error& e) {
    return from_code(e.code());
  }
  return op_ok;
}

// check: closed, context done, deadline passed, in that order.
[[gnu::always_inline]] inline op_err check(const poll_desc& pd, int dir,
                                           const ctx_wait* cw) noexcept {
  if (pd_closing(pd)) return ECANCELED;
  if (cw != nullptr) {
    if (const op_err e = cw->err()) return e;
  }
  if (netpoll_timed_out(pd, dir)) return ETIMEDOUT;
  return op_ok;
}

std::int64_t to_ns(std::chrono::steady_clock::time_point t) noexcept {
  if (t == std::chrono::steady_clock::time_point::max()) return no_deadline;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

void set_nodelay(int fd) noexcept {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// adopt: give a fresh descriptor a record; closes it if that fails.
poll_desc* adopt(int fd, std::uint32_t* gen) {
  try {
    return pd_open(fd, gen);
  } catch (...) {
    sys_close(fd);
    throw;
  }
}

// read_locked: the caller holds the read lock; `n` gets the bytes read.
//
// A read that returned less than it asked for drained the socket: TCP
// hands over everything queued, and data arriving later raises a new edge.
// So the next read waits for that edge first instead of spending a system
// call on EAGAIN (nginx and the epoll peer do the same); a pending
// readiness (slot_ready) makes the wait return at once. Edge-triggered
// registration is what makes this safe: every arrival after the short read
// marks the slot ready or wakes the waiter.
//
// Not after a hang-up: a FIN (or an error) queued behind the data raises no
// further edge, so then the read always tries first.
[[gnu::always_inline]] inline op_err read_locked(poll_desc& pd, std::span<std::byte> buf,
                                                 ctx_wait* cw, std::size_t& n) {
  n = 0;
  bool wait_first =
      pd.read_drained && !pd.hup.load(std::memory_order_relaxed) && in_parkable_fiber();
  for (;;) {
    if (const op_err e = check(pd, dir_read, cw)) return e;
    if (buf.empty()) return op_ok;
    if (wait_first) {
      wait_first = false;
      if (const op_err e = wait_for(pd, dir_read, cw, no_deadline, true)) return e;
      continue;
    }
    const ssize_t r = sys_read(pd.fd, buf.data(), buf.size());
    if (r >= 0) {
      pd.read_drained = r > 0 && static_cast<std::size_t>(r) < buf.size();
      n = static_cast<std::size_t>(r);
      return op_ok;
    }
    const int e = last_errno();
    pd.read_drained = false;
    if (e == EINTR) continue;
    if (e != EAGAIN) return e;
    if (const op_err w = wait_for(pd, dir_read, cw, no_deadline, true)) return w;
  }
}

[[gnu::always_inline]] inline op_err write_locked(poll_desc& pd, std::span<const std::byte> buf,
                                                  ctx_wait* cw, std::size_t& done) {
  done = 0;
  while (done < buf.size()) {
    if (const op_err e = check(pd, dir_write, cw)) return e;
    const ssize_t n = sys_send(pd.fd, buf.data() + done, buf.size() - done);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    const int e = last_errno();
    if (e == EINTR) continue;
    if (e != EAGAIN) return e;
    if (const op_err w = wait_for(pd, dir_write, cw, no_deadline, true)) return w;
  }
  return op_ok;
}

std::string name_of(const poll_desc& pd, bool peer, std::error_code& ec) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? ::getpeername(pd.fd, sa, &len) : ::getsockname(pd.fd, sa, &len)) != 0) {
    ec = errno_code(last_errno());
    return {};
  }
  return format_address(sa, len);
}

// poll_now: is `fd` ready for `events` right now (or hung up, or in error)?
bool poll_now(int fd, short events, std::error_code& ec) {
  pollfd p{fd, events, 0};
  const timespec zero{0, 0};
  const int r = sys_ppoll(&p, 1, &zero);
  if (r < 0) {
    const int e = last_errno();
    if (e != EINTR) ec = errno_code(e);
    return false;
  }
  if (r == 0) return false;
  if ((p.revents & POLLNVAL) != 0) {
    ec = errno_code(EBADF);
    return false;
  }
  return true;
}

// backoff_wait: sleep `delay` in accept's resource back-off, waking early
// only when the listener is closed or the context is done.
op_err backoff_wait(poll_desc& pd, std::int64_t delay, ctx_wait* cw) {
  const std::int64_t until = now_ns() + delay;
  while (!pd_closing(pd)) {
    if (const op_err e = cw != nullptr ? cw->err() : op_ok) return e;
    const std::int64_t now = now_ns();
    if (now >= until) return op_ok;
    if (in_parkable_fiber()) {
      // Wakes on the timer, on close, on the context, or on a new
      // connection's edge (then it just waits again): never a spin.
      if (const op_err e = wait_for(pd, dir_read, cw, until, false)) return e;
    } else {
      // The listening socket is readable (connections are pending), so
      // poll(2) would return at once: sleep in short slices instead.
      std::this_thread::sleep_for(
          std::chrono::nanoseconds(std::min<std::int64_t>(until - now, 10'000'000)));
    }
  }
  return op_ok;
}

std::error_code wait_io(int fd, int dir, std::chrono::steady_clock::time_point deadline,
                        const context* ctx) {
  if (fd < 0) return errno_code(EBADF);
  const short events = dir == dir_read ? (POLLIN | POLLRDHUP) : POLLOUT;
  std::error_code ec;
  if (ctx != nullptr) ec = ctx->err();
  if (ec || poll_now(fd, events, ec) || ec) return ec;
  const std::int64_t until = to_ns(deadline);
  if (until != no_deadline && until <= now_ns()) return timeout_code();
  std::uint32_t gen = 0;
  poll_desc* pd = pd_borrow(fd, &gen);
  struct release {
    poll_desc* pd;
    ~release() { pd_release(*pd); }
  } rel{pd};
  dir_lock lk(*pd, dir);
  ctx_wait cw(ctx, *pd, dir);
  for (;;) {
    if (poll_now(fd, events, ec) || ec) return ec;
    if (pd_closing(*pd)) return canceled_code();  // a weft conn's descriptor, closed
    if (const op_err e = cw.err()) return to_code(e);
    if (until != no_deadline && until <= now_ns()) return timeout_code();
    if (const op_err e = wait_for(*pd, dir, &cw, until, false)) return to_code(e);
  }
}

// ---- dial ----

// connect_one: one attempt; returns the connected conn or throws.
net::conn connect_one(const sock_address& addr, std::int64_t until, const context* ctx,
                      const char* api) {
  const int fd = sys_socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(last_errno(), api);
  std::uint32_t gen = 0;
  poll_desc* pd = adopt(fd, &gen);
  net::conn c = net_access::conn(pd, gen);  // closes fd if we throw
  if (sys_connect(fd, addr.sa(), addr.len) == 0) {
    set_nodelay(fd);
    return c;
  }
  const int e = last_errno();
  if (e != EINPROGRESS && e != EINTR) throw_errno(e, api);
  ctx_wait cw(ctx, *pd, dir_write);
  for (;;) {
    if (const op_err ce = cw.err()) throw std::system_error(to_code(ce), api);
    if (until != no_deadline && until <= now_ns()) throw_timeout(api);
    if (const op_err we = wait_for(*pd, dir_write, &cw, until, false)) {
      throw std::system_error(to_code(we), api);
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) throw_errno(last_errno(), api);
    if (err == 0) {
      // Writable without an error: connected, unless the wakeup was
      // spurious (a stale readiness) and the handshake is still running.
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
        set_nodelay(fd);
        return c;
      }
      const int pe = last_errno();
      if (pe != ENOTCONN) throw_errno(pe, api);
      continue;
    }
    if (err != EINPROGRESS && err != EALREADY && err != EINTR) throw_errno(err, api);
  }
}

// bind_listen: a listening socket for `a`, or -1 with errno set.
int bind_listen(const sock_address& a, bool dual_stack, int backlog) {
  const int fd = sys_socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a.family() == AF_INET6) {
    const int v6only = dual_stack ? 0 : 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  if (::bind(fd, a.sa(), a.len) != 0 || ::listen(fd, backlog) != 0) {
    const int e = last_errno();
    sys_close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

net::listener listen_or_throw(std::string_view address, int backlog) {
  static constexpr const char* api = "weft::net::listen";
  const host_port hp = split_host_port(address, api);
  sock_address a;
  int fd = -1;
  if (hp.host.empty() || hp.host == "::") {
    // Every interface: one dual-stack IPv6 socket, else IPv4 only.
    ip_literal("::", hp.port, a);
    fd = bind_listen(a, true, backlog);
    if (fd < 0 && hp.host.empty() &&
        (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL || errno == EPROTONOSUPPORT)) {
      ip_literal("0.0.0.0", hp.port, a);
      fd = bind_listen(a, false, backlog);
    }
  } else {
    if (!ip_literal(hp.host, hp.port, a)) a = resolve(hp.host, hp.port, true, api).front();
    fd = bind_listen(a, false, backlog);
  }
  if (fd < 0) {
    const int e = last_errno();
    throw std::system_error(e, std::generic_category(),
                            std::string(api) + " " + std::string(address));
  }
  std::uint32_t gen = 0;
  poll_desc* pd = adopt(fd, &gen);
  return net_access::listener(pd, gen);
}

net::conn dial_or_throw(const context* ctx, std::string_view address,
                        std::chrono::milliseconds timeout) {
  static constexpr const char* api = "weft::net::dial";
  constexpr std::int64_t sane_minimum = 2'000'000'000;  // per address, as Go's partialDeadline
  if (ctx != nullptr && ctx_is_background(*ctx)) ctx = nullptr;
  const auto ctx_failed = [&] {
    if (ctx == nullptr) return;
    if (std::error_code e = ctx->err()) throw std::system_error(e, api);
  };
  ctx_failed();
  const std::int64_t start = now_ns();
  std::int64_t deadline = no_deadline;
  if (timeout.count() < 0) {
    deadline = start;  // expired: fails before the first attempt
  } else if (timeout.count() != 0) {
    const std::int64_t ns =
        timeout.count() > INT64_MAX / 1'000'000 ? INT64_MAX : timeout.count() * 1'000'000;
    deadline = ns >= no_deadline - start ? no_deadline : start + ns;
  }
  const host_port hp = split_host_port(address, api);
  std::vector<sock_address> addrs(1);
  if (hp.host.empty()) {
    ip_literal("127.0.0.1", hp.port, addrs[0]);
  } else if (!ip_literal(hp.host, hp.port, addrs[0])) {
    addrs = resolve(hp.host, hp.port, false, api);
    ctx_failed();
  }
  std::error_code last;
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    const std::int64_t now = now_ns();
    if (deadline != no_deadline && now >= deadline) throw_timeout(api);
    std::int64_t until = deadline;
    if (deadline != no_deadline) {
      // Split what is left among the remaining addresses, so one that
      // never answers cannot eat the whole timeout.
      const std::int64_t left = deadline - now;
      std::int64_t share = left / static_cast<std::int64_t>(addrs.size() - i);
      if (share < sane_minimum) share = std::min(sane_minimum, left);
      until = now + share;
    }
    try {
      return connect_one(addrs[i], until, ctx, api);
    } catch (const std::system_error& e) {
      ctx_failed();
      if (e.code() == std::errc::timed_out && until == deadline) throw;
      last = e.code();
    }
  }
  throw std::system_error(last, std::string(api) + " " + std::string(address));
}

// ---- conn operations ----

// has_ctx: `ctx` can become done, so the operation must watch it. The
// operations below inline their loop twice, with and without a ctx_wait,
// so that the common case builds nothing.
bool has_ctx(const context* ctx) noexcept { return ctx != nullptr && !ctx_is_background(*ctx); }

[[gnu::always_inline]] inline std::size_t read_all_locked(poll_desc& pd, std::span<std::byte> buf,
                                                          ctx_wait* cw, op_err& err) {
  std::size_t done = 0;
  err = op_ok;
  while (done < buf.size()) {
    std::size_t n = 0;
    err = read_locked(pd, buf.subspan(done), cw, n);
    if (err != op_ok) return done;
    if (n == 0) {
      err = -static_cast<op_err>(weft::errc::eof);
      return done;
    }
    done += n;
  }
  return done;
}

[[gnu::always_inline]] inline std::size_t conn_read(poll_desc* p, std::uint32_t gen,
                                                    const context* ctx, std::span<std::byte> buf,
                                                    op_err& err) {
  op_ref ref(p, gen);
  if (!ref.ok()) {
    err = ECANCELED;
    return 0;
  }
  dir_lock lk(*p, dir_read);
  std::size_t n = 0;
  if (!has_ctx(ctx)) {
    err = read_locked(*p, buf, nullptr, n);
  } else {
    ctx_wait cw(ctx, *p, dir_read);
    err = read_locked(*p, buf, &cw, n);
  }
  return n;
}

[[gnu::always_inline]] inline std::size_t conn_read_exactly(poll_desc* p, std::uint32_t gen,
                                                            const context* ctx,
                                                            std::span<std::byte> buf, op_err& err) {
  op_ref ref(p, gen);
  if (!ref.ok()) {
    err = ECANCELED;
    return 0;
  }
  dir_lock lk(*p, dir_read);
  if (!has_ctx(ctx)) return read_all_locked(*p, buf, nullptr, err);
  ctx_wait cw(ctx, *p, dir_read);
  return read_all_locked(*p, buf, &cw, err);
}

[[gnu::always_inline]] inline std::size_t conn_write(poll_desc* p, std::uint32_t gen,
                                                     const context* ctx,
                                                     std::span<const std::byte> buf, op_err& err) {
  op_ref ref(p, gen);
  if (!ref.ok()) {
    err = ECANCELED;
    return 0;
  }
  dir_lock lk(*p, dir_write);
  std::size_t done = 0;
  if (!has_ctx(ctx)) {
    err = write_locked(*p, buf, nullptr, done);
  } else {
    ctx_wait cw(ctx, *p, dir_write);
    err = write_locked(*p, buf, &cw, done);
  }
  return done;
}

void throw_read_exactly(op_err e, std::size_t done, std::size_t want) {
  static constexpr const char* api = "weft::net::conn::read_exactly";
  if (e == -static_cast<op_err>(weft::errc::eof)) {
    throw net::unexpected_eof(std::string(api) + ": end of stream after " + std::to_string(done) +
                              " of " + std::to_string(want) + " bytes");
  }
  throw std::system_error(to_code(e), api);
}

net::conn conn_accept(poll_desc* lp, std::uint32_t lgen, const context* ctx, op_err& err) {
  constexpr std::int64_t first_backoff = 2'000'000, max_backoff = 100'000'000;
  err = op_ok;
  op_ref ref(lp, lgen);
  if (!ref.ok()) {
    err = ECANCELED;
    return {};
  }
  poll_desc& pd = *lp;
  dir_lock lk(pd, dir_read);
  std::optional<ctx_wait> slot;
  ctx_wait* cw = has_ctx(ctx) ? &slot.emplace(ctx, pd, dir_read) : nullptr;
  std::int64_t backoff = 0;
  for (;;) {
    if (pd_closing(pd)) {
      err = ECANCELED;
      return {};
    }
    if (cw != nullptr && (err = cw->err()) != op_ok) return {};
    const int fd = sys_accept4(pd.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd);
      std::uint32_t gen = 0;
      poll_desc* c = adopt(fd, &gen);
      return net_access::conn(c, gen);
    }
    const int e = last_errno();
    switch (e) {
      case EAGAIN:
        if ((err = wait_for(pd, dir_read, cw, no_deadline, false)) != op_ok) return {};
        break;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        backoff = backoff == 0 ? first_backoff : std::min(2 * backoff, max_backoff);
        if ((err = backoff_wait(pd, backoff, cw)) != op_ok) return {};
        break;
      // The pending connection failed before we took it (accept(2) lists
      // these as "treat like EAGAIN by retrying").
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
        break;
      default:
        err = e;
        return {};
    }
  }
}

}  // namespace
}  // namespace detail

namespace net {

using detail::dir_read;
using detail::dir_write;

// ---- conn ----

conn& conn::operator=(conn&& other) noexcept {
  if (this != &other) {
    if (pd_ != nullptr) detail::pd_close(*pd_, gen_);
    pd_ = other.pd_;
    gen_ = other.gen_;
    other.pd_ = nullptr;
  }
  return *this;
}

conn::~conn() {
  if (pd_ != nullptr) detail::pd_close(*pd_, gen_);
}

std::size_t conn::read(std::span<std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_read(pd_, gen_, nullptr, buf, e);
  detail::set_code(ec, e);
  return n;
}

std::size_t conn::read(const context& ctx, std::span<std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_read(pd_, gen_, &ctx, buf, e);
  detail::set_code(ec, e);
  return n;
}

std::size_t conn::read(std::span<std::byte> buf) {
  detail::op_err e;
  const std::size_t n = detail::conn_read(pd_, gen_, nullptr, buf, e);
  if (e != detail::op_ok) throw std::system_error(detail::to_code(e), "weft::net::conn::read");
  return n;
}

std::size_t conn::read(const context& ctx, std::span<std::byte> buf) {
  detail::op_err e;
  const std::size_t n = detail::conn_read(pd_, gen_, &ctx, buf, e);
  if (e != detail::op_ok) throw std::system_error(detail::to_code(e), "weft::net::conn::read");
  return n;
}

std::size_t conn::read_exactly(std::span<std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_read_exactly(pd_, gen_, nullptr, buf, e);
  detail::set_code(ec, e);
  return n;
}

std::size_t conn::read_exactly(const context& ctx, std::span<std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_read_exactly(pd_, gen_, &ctx, buf, e);
  detail::set_code(ec, e);
  return n;
}

void conn::read_exactly(std::span<std::byte> buf) {
  detail::op_err e;
  const std::size_t n = detail::conn_read_exactly(pd_, gen_, nullptr, buf, e);
  if (e != detail::op_ok) detail::throw_read_exactly(e, n, buf.size());
}

void conn::read_exactly(const context& ctx, std::span<std::byte> buf) {
  detail::op_err e;
  const std::size_t n = detail::conn_read_exactly(pd_, gen_, &ctx, buf, e);
  if (e != detail::op_ok) detail::throw_read_exactly(e, n, buf.size());
}

std::size_t conn::write(std::span<const std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_write(pd_, gen_, nullptr, buf, e);
  detail::set_code(ec, e);
  return n;
}

std::size_t conn::write(const context& ctx, std::span<const std::byte> buf, std::error_code& ec) {
  detail::op_err e;
  const std::size_t n = detail::conn_write(pd_, gen_, &ctx, buf, e);
  detail::set_code(ec, e);
  return n;
}

void conn::write(std::span<const std::byte> buf) {
  detail::op_err e;
  detail::conn_write(pd_, gen_, nullptr, buf, e);
  if (e != detail::op_ok) throw std::system_error(detail::to_code(e), "weft::net::conn::write");
}

void conn::write(const context& ctx, std::span<const std::byte> buf) {
  detail::op_err e;
  detail::conn_write(pd_, gen_, &ctx, buf, e);
  if (e != detail::op_ok) throw std::system_error(detail::to_code(e), "weft::net::conn::write");
}

namespace {

void set_deadlines(detail::poll_desc* pd, std::uint32_t gen, bool rd, bool wr,
                   std::chrono::steady_clock::time_point t, std::error_code& ec) {
  ec.clear();
  detail::op_ref ref(pd, gen);
  if (!ref.ok()) {
    ec = detail::canceled_code();
    return;
  }
  const std::int64_t ns = detail::to_ns(t);
  if (rd) detail::netpoll_set_deadline(*pd, dir_read, ns);
  if (wr) detail::netpoll_set_deadline(*pd, dir_write, ns);
}

}  // namespace

void conn::set_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec) {
  set_deadlines(pd_, gen_, true, true, t, ec);
}
void conn::set_read_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec) {
  set_deadlines(pd_, gen_, true, false, t, ec);
}
void conn::set_write_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec) {
  set_deadlines(pd_, gen_, false, true, t, ec);
}

void conn::set_deadline(std::chrono::steady_clock::time_point t) {
  std::error_code ec;
  set_deadline(t, ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::set_deadline");
}

void conn::set_read_deadline(std::chrono::steady_clock::time_point t) {
  std::error_code ec;
  set_read_deadline(t, ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::set_read_deadline");
}

void conn::set_write_deadline(std::chrono::steady_clock::time_point t) {
  std::error_code ec;
  set_write_deadline(t, ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::set_write_deadline");
}

void conn::shutdown_write(std::error_code& ec) {
  ec.clear();
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) {
    ec = detail::canceled_code();
  } else if (::shutdown(pd_->fd, SHUT_WR) != 0) {
    ec = detail::errno_code(detail::last_errno());
  }
}

void conn::shutdown_write() {
  std::error_code ec;
  shutdown_write(ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::shutdown_write");
}

void conn::close(std::error_code& ec) noexcept {
  ec.clear();
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) ec = detail::canceled_code();
}

void conn::close() {
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) {
    detail::throw_canceled("weft::net::conn::close");
  }
}

int conn::fd() const {
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) detail::throw_canceled("weft::net::conn::fd");
  return pd_->fd;
}

std::string conn::local_address(std::error_code& ec) const {
  ec.clear();
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) {
    ec = detail::canceled_code();
    return {};
  }
  return detail::name_of(*pd_, false, ec);
}

std::string conn::remote_address(std::error_code& ec) const {
  ec.clear();
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) {
    ec = detail::canceled_code();
    return {};
  }
  return detail::name_of(*pd_, true, ec);
}

std::string conn::local_address() const {
  std::error_code ec;
  std::string s = local_address(ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::local_address");
  return s;
}

std::string conn::remote_address() const {
  std::error_code ec;
  std::string s = remote_address(ec);
  if (ec) throw std::system_error(ec, "weft::net::conn::remote_address");
  return s;
}

// ---- listener ----

listener& listener::operator=(listener&& other) noexcept {
  if (this != &other) {
    if (pd_ != nullptr) detail::pd_close(*pd_, gen_);
    pd_ = other.pd_;
    gen_ = other.gen_;
    other.pd_ = nullptr;
  }
  return *this;
}

listener::~listener() {
  if (pd_ != nullptr) detail::pd_close(*pd_, gen_);
}

conn listener::accept(std::error_code& ec) {
  detail::op_err e;
  conn c = detail::conn_accept(pd_, gen_, nullptr, e);
  detail::set_code(ec, e);
  return c;
}

conn listener::accept(const context& ctx, std::error_code& ec) {
  detail::op_err e;
  conn c = detail::conn_accept(pd_, gen_, &ctx, e);
  detail::set_code(ec, e);
  return c;
}

conn listener::accept() {
  detail::op_err e;
  conn c = detail::conn_accept(pd_, gen_, nullptr, e);
  if (e != detail::op_ok) {
    throw std::system_error(detail::to_code(e), "weft::net::listener::accept");
  }
  return c;
}

conn listener::accept(const context& ctx) {
  detail::op_err e;
  conn c = detail::conn_accept(pd_, gen_, &ctx, e);
  if (e != detail::op_ok) {
    throw std::system_error(detail::to_code(e), "weft::net::listener::accept");
  }
  return c;
}

std::uint16_t listener::port() const {
  static constexpr const char* api = "weft::net::listener::port";
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) detail::throw_canceled(api);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(pd_->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    detail::throw_errno(detail::last_errno(), api);
  }
  return detail::port_of(reinterpret_cast<sockaddr*>(&ss));
}

std::string listener::address() const {
  static constexpr const char* api = "weft::net::listener::address";
  detail::op_ref ref(pd_, gen_);
  if (!ref.ok()) detail::throw_canceled(api);
  std::error_code ec;
  std::string s = detail::name_of(*pd_, false, ec);
  if (ec) throw std::system_error(ec, api);
  return s;
}

void listener::close(std::error_code& ec) noexcept {
  ec.clear();
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) ec = detail::canceled_code();
}

void listener::close() {
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) {
    detail::throw_canceled("weft::net::listener::close");
  }
}

// ---- listen, dial, wait ----

listener listen(std::string_view address, int backlog) {
  return detail::listen_or_throw(address, backlog);
}

listener listen(std::string_view address, int backlog, std::error_code& ec) {
  ec.clear();
  try {
    return detail::listen_or_throw(address, backlog);
  } catch (const std::system_error& e) {
    ec = e.code();
  }
  return {};
}

listener listen(std::string_view address, std::error_code& ec) { return listen(address, 4096, ec); }

conn dial(std::string_view address, std::chrono::milliseconds timeout) {
  return detail::dial_or_throw(nullptr, address, timeout);
}

conn dial(const context& ctx, std::string_view address, std::chrono::milliseconds timeout) {
  return detail::dial_or_throw(&ctx, address, timeout);
}

conn dial(const context& ctx, std::string_view address, std::chrono::milliseconds timeout,
          std::error_code& ec) {
  ec.clear();
  try {
    return detail::dial_or_throw(&ctx, address, timeout);
  } catch (const std::system_error& e) {
    ec = e.code();
  }
  return {};
}

conn dial(std::string_view address, std::chrono::milliseconds timeout, std::error_code& ec) {
  return dial(background(), address, timeout, ec);
}

conn dial(std::string_view address, std::error_code& ec) {
  return dial(background(), address, std::chrono::seconds(30), ec);
}

conn dial(const context& ctx, std::string_view address, std::error_code& ec) {
  return dial(ctx, address, std::chrono::seconds(30), ec);
}

void wait_readable(int fd, std::chrono::steady_clock::time_point deadline, std::error_code& ec) {
  ec = detail::wait_io(fd, dir_read, deadline, nullptr);
}

void wait_writable(int fd, std::chrono::steady_clock::time_point deadline, std::error_code& ec) {
  ec = detail::wait_io(fd, dir_write, deadline, nullptr);
}

void wait_readable(const context& ctx, int fd, std::error_code& ec) {
  ec = detail::wait_io(fd, dir_read, std::chrono::steady_clock::time_point::max(), &ctx);
}

void wait_writable(const context& ctx, int fd, std::error_code& ec) {
  ec = detail::wait_io(fd, dir_write, std::chrono::steady_clock::time_point::max(), &ctx);
}

void wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
  std::error_code ec;
  wait_readable(fd, deadline, ec);
  if (ec) throw std::system_error(ec, "weft::net::wait_readable");
}

void wait_writable(int fd, std::chrono::steady_clock::time_point deadline) {
  std::error_code ec;
  wait_writable(fd, deadline, ec);
  if (ec) throw std::system_error(ec, "weft::net::wait_writable");
}

void wait_readable(const context& ctx, int fd) {
  std::error_code ec;
  wait_readable(ctx, fd, ec);
  if (ec) throw std::system_error(ec, "weft::net::wait_readable");
}

void wait_writable(const context& ctx, int fd) {
  std::error_code ec;
  wait_writable(ctx, fd, ec);
  if (ec) throw std::system_error(ec, "weft::net::wait_writable");
}

}  // namespace net
}  // namespace weft
