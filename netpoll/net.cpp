// net.cpp: weft::net (weft/net.hpp) on top of the netpoller (netpoll.cpp).
//
// Every operation follows one pattern: take a reference on the descriptor's
// record (which fails once it is closed: operation_canceled), take the
// direction's lock, then loop { check closing and deadline; try the system
// call; on EAGAIN netpoll_wait }. errno is read right after each failing
// call, before anything that can switch fibers (DESIGN.md section 7).

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
#include <system_error>
#include <thread>

#include "netpoll/address.hpp"
#include "netpoll/netpoll.hpp"
#include "netpoll/poller.hpp"

namespace weft {
namespace detail {

struct net_access {
  static net::conn conn(poll_desc* pd, std::uint32_t gen) noexcept { return net::conn(pd, gen); }
  static net::listener listener(poll_desc* pd, std::uint32_t gen) noexcept {
    return net::listener(pd, gen);
  }
};

namespace {

[[noreturn]] void throw_errno(int e, const char* api) {
  throw std::system_error(e, std::generic_category(), api);
}
[[noreturn]] void throw_canceled(const char* api) {
  throw std::system_error(std::make_error_code(std::errc::operation_canceled), api);
}
[[noreturn]] void throw_timeout(const char* api) {
  throw std::system_error(std::make_error_code(std::errc::timed_out), api);
}

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

// op_ref: one operation's reference on a record (netpoll.cpp N3).
class op_ref {
 public:
  op_ref(poll_desc* pd, std::uint32_t gen, const char* api) : pd_(pd) {
    if (pd == nullptr || !pd_acquire(*pd, gen)) throw_canceled(api);
  }
  ~op_ref() { pd_release(*pd_); }
  op_ref(const op_ref&) = delete;
  op_ref& operator=(const op_ref&) = delete;
  poll_desc& pd() const noexcept { return *pd_; }

 private:
  poll_desc* pd_;
};

// sys_read / sys_send: the system calls without glibc's cancellation-point
// wrappers (two extra calls around every read and send; a fiber cannot be
// cancelled by pthread_cancel anyway). Return -1 with errno set on failure.
ssize_t sys_read(int fd, void* buf, std::size_t n) noexcept {
  return ::syscall(SYS_read, fd, buf, n);
}
ssize_t sys_send(int fd, const void* buf, std::size_t n) noexcept {
  return ::syscall(SYS_sendto, fd, buf, n, MSG_NOSIGNAL, nullptr, 0);
}

void check(const poll_desc& pd, int dir, const char* api) {
  if (pd_closing(pd)) throw_canceled(api);
  if (netpoll_timed_out(pd, dir)) throw_timeout(api);
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
    ::close(fd);
    throw;
  }
}

// read_locked: the caller holds the read lock.
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
std::size_t read_locked(poll_desc& pd, std::span<std::byte> buf, const char* api) {
  bool wait_first =
      pd.read_drained && !pd.hup.load(std::memory_order_relaxed) && in_parkable_fiber();
  for (;;) {
    check(pd, dir_read, api);
    if (buf.empty()) return 0;
    if (wait_first) {
      wait_first = false;
      netpoll_wait(pd, dir_read, no_deadline, true);
      continue;
    }
    const ssize_t n = sys_read(pd.fd, buf.data(), buf.size());
    if (n >= 0) {
      pd.read_drained = n > 0 && static_cast<std::size_t>(n) < buf.size();
      return static_cast<std::size_t>(n);
    }
    const int e = errno;
    pd.read_drained = false;
    if (e == EINTR) continue;
    if (e != EAGAIN) throw_errno(e, api);
    netpoll_wait(pd, dir_read, no_deadline, true);
  }
}

void write_locked(poll_desc& pd, std::span<const std::byte> buf, const char* api) {
  std::size_t done = 0;
  while (done < buf.size()) {
    check(pd, dir_write, api);
    const ssize_t n = sys_send(pd.fd, buf.data() + done, buf.size() - done);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN) throw_errno(e, api);
    netpoll_wait(pd, dir_write, no_deadline, true);
  }
}

std::string name_of(const poll_desc& pd, bool peer, const char* api) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if ((peer ? ::getpeername(pd.fd, sa, &len) : ::getsockname(pd.fd, sa, &len)) != 0) {
    throw_errno(errno, api);
  }
  return format_address(sa, len);
}

// poll_now: is `fd` ready for `events` right now (or hung up, or in error)?
bool poll_now(int fd, short events, const char* api) {
  pollfd p{fd, events, 0};
  const timespec zero{0, 0};
  const int r = ::ppoll(&p, 1, &zero, nullptr);
  if (r < 0) {
    const int e = errno;
    if (e == EINTR) return false;
    throw_errno(e, api);
  }
  if (r == 0) return false;
  if ((p.revents & POLLNVAL) != 0) throw_errno(EBADF, api);
  return true;
}

// backoff_wait: sleep `delay` in accept's resource back-off, waking early
// only when the listener is closed.
void backoff_wait(poll_desc& pd, std::int64_t delay) {
  const std::int64_t until = now_ns() + delay;
  while (!pd_closing(pd)) {
    const std::int64_t now = now_ns();
    if (now >= until) return;
    if (in_parkable_fiber()) {
      // Wakes on the timer, on close, or on a new connection's edge (then
      // it just waits again): never a spin.
      netpoll_wait(pd, dir_read, until, false);
    } else {
      // The listening socket is readable (connections are pending), so
      // poll(2) would return at once: sleep in short slices instead.
      std::this_thread::sleep_for(
          std::chrono::nanoseconds(std::min<std::int64_t>(until - now, 10'000'000)));
    }
  }
}

void wait_io(int fd, int dir, std::chrono::steady_clock::time_point deadline, const char* api) {
  if (fd < 0) throw_errno(EBADF, api);
  const short events = dir == dir_read ? (POLLIN | POLLRDHUP) : POLLOUT;
  if (poll_now(fd, events, api)) return;
  const std::int64_t until = to_ns(deadline);
  if (until != no_deadline && until <= now_ns()) throw_timeout(api);
  std::uint32_t gen = 0;
  poll_desc* pd = pd_borrow(fd, &gen);
  struct release {
    poll_desc* pd;
    ~release() { pd_release(*pd); }
  } rel{pd};
  dir_lock lk(*pd, dir);
  for (;;) {
    if (poll_now(fd, events, api)) return;
    if (pd_closing(*pd)) throw_canceled(api);  // a weft conn's descriptor, closed
    if (until != no_deadline && until <= now_ns()) throw_timeout(api);
    netpoll_wait(*pd, dir, until, false);
  }
}

// ---- dial ----

// connect_one: one attempt; returns the connected conn or throws.
net::conn connect_one(const sock_address& addr, std::int64_t until, const char* api) {
  const int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, api);
  std::uint32_t gen = 0;
  poll_desc* pd = adopt(fd, &gen);
  net::conn c = net_access::conn(pd, gen);  // closes fd if we throw
  if (::connect(fd, addr.sa(), addr.len) == 0) {
    set_nodelay(fd);
    return c;
  }
  const int e = errno;
  if (e != EINPROGRESS && e != EINTR) throw_errno(e, api);
  for (;;) {
    if (until != no_deadline && until <= now_ns()) throw_timeout(api);
    netpoll_wait(*pd, dir_write, until, false);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) throw_errno(errno, api);
    if (err == 0) {
      // Writable without an error: connected, unless the wakeup was
      // spurious (a stale readiness) and the handshake is still running.
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) {
        set_nodelay(fd);
        return c;
      }
      const int pe = errno;
      if (pe != ENOTCONN) throw_errno(pe, api);
      continue;
    }
    if (err != EINPROGRESS && err != EALREADY && err != EINTR) throw_errno(err, api);
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

std::size_t conn::read(std::span<std::byte> buf) {
  static constexpr const char* api = "weft::net::conn::read";
  detail::op_ref ref(pd_, gen_, api);
  detail::dir_lock lk(*pd_, dir_read);
  return detail::read_locked(*pd_, buf, api);
}

void conn::read_exactly(std::span<std::byte> buf) {
  static constexpr const char* api = "weft::net::conn::read_exactly";
  detail::op_ref ref(pd_, gen_, api);
  detail::dir_lock lk(*pd_, dir_read);
  std::size_t done = 0;
  while (done < buf.size()) {
    const std::size_t n = detail::read_locked(*pd_, buf.subspan(done), api);
    if (n == 0) {
      throw unexpected_eof(std::string(api) + ": end of stream after " + std::to_string(done) +
                           " of " + std::to_string(buf.size()) + " bytes");
    }
    done += n;
  }
}

void conn::write(std::span<const std::byte> buf) {
  static constexpr const char* api = "weft::net::conn::write";
  detail::op_ref ref(pd_, gen_, api);
  detail::dir_lock lk(*pd_, dir_write);
  detail::write_locked(*pd_, buf, api);
}

void conn::set_deadline(std::chrono::steady_clock::time_point t) {
  detail::op_ref ref(pd_, gen_, "weft::net::conn::set_deadline");
  const std::int64_t ns = detail::to_ns(t);
  detail::netpoll_set_deadline(*pd_, dir_read, ns);
  detail::netpoll_set_deadline(*pd_, dir_write, ns);
}

void conn::set_read_deadline(std::chrono::steady_clock::time_point t) {
  detail::op_ref ref(pd_, gen_, "weft::net::conn::set_read_deadline");
  detail::netpoll_set_deadline(*pd_, dir_read, detail::to_ns(t));
}

void conn::set_write_deadline(std::chrono::steady_clock::time_point t) {
  detail::op_ref ref(pd_, gen_, "weft::net::conn::set_write_deadline");
  detail::netpoll_set_deadline(*pd_, dir_write, detail::to_ns(t));
}

void conn::shutdown_write() {
  static constexpr const char* api = "weft::net::conn::shutdown_write";
  detail::op_ref ref(pd_, gen_, api);
  if (::shutdown(pd_->fd, SHUT_WR) != 0) detail::throw_errno(errno, api);
}

void conn::close() {
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) {
    detail::throw_canceled("weft::net::conn::close");
  }
}

int conn::fd() const {
  detail::op_ref ref(pd_, gen_, "weft::net::conn::fd");
  return pd_->fd;
}

std::string conn::local_address() const {
  static constexpr const char* api = "weft::net::conn::local_address";
  detail::op_ref ref(pd_, gen_, api);
  return detail::name_of(*pd_, false, api);
}

std::string conn::remote_address() const {
  static constexpr const char* api = "weft::net::conn::remote_address";
  detail::op_ref ref(pd_, gen_, api);
  return detail::name_of(*pd_, true, api);
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

conn listener::accept() {
  static constexpr const char* api = "weft::net::listener::accept";
  constexpr std::int64_t first_backoff = 2'000'000, max_backoff = 100'000'000;
  detail::op_ref ref(pd_, gen_, api);
  detail::poll_desc& pd = *pd_;
  detail::dir_lock lk(pd, dir_read);
  std::int64_t backoff = 0;
  for (;;) {
    if (detail::pd_closing(pd)) detail::throw_canceled(api);
    const int fd = ::accept4(pd.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      detail::set_nodelay(fd);
      std::uint32_t gen = 0;
      detail::poll_desc* c = detail::adopt(fd, &gen);
      return detail::net_access::conn(c, gen);
    }
    const int e = errno;
    switch (e) {
      case EAGAIN:
        detail::netpoll_wait(pd, dir_read, detail::no_deadline, false);
        break;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        backoff = backoff == 0 ? first_backoff : std::min(2 * backoff, max_backoff);
        detail::backoff_wait(pd, backoff);
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
        detail::throw_errno(e, api);
    }
  }
}

std::uint16_t listener::port() const {
  static constexpr const char* api = "weft::net::listener::port";
  detail::op_ref ref(pd_, gen_, api);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(pd_->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    detail::throw_errno(errno, api);
  }
  return detail::port_of(reinterpret_cast<sockaddr*>(&ss));
}

std::string listener::address() const {
  static constexpr const char* api = "weft::net::listener::address";
  detail::op_ref ref(pd_, gen_, api);
  return detail::name_of(*pd_, false, api);
}

void listener::close() {
  if (pd_ == nullptr || !detail::pd_close(*pd_, gen_)) {
    detail::throw_canceled("weft::net::listener::close");
  }
}

// ---- listen, dial ----

namespace {

// bind_listen: a listening socket for `a`, or -1 with errno set.
int bind_listen(const detail::sock_address& a, bool dual_stack, int backlog) {
  const int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a.family() == AF_INET6) {
    const int v6only = dual_stack ? 0 : 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  if (::bind(fd, a.sa(), a.len) != 0 || ::listen(fd, backlog) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

}  // namespace

listener listen(std::string_view address, int backlog) {
  static constexpr const char* api = "weft::net::listen";
  const detail::host_port hp = detail::split_host_port(address, api);
  detail::sock_address a;
  int fd = -1;
  if (hp.host.empty() || hp.host == "::") {
    // Every interface: one dual-stack IPv6 socket, else IPv4 only.
    detail::ip_literal("::", hp.port, a);
    fd = bind_listen(a, true, backlog);
    if (fd < 0 && hp.host.empty() &&
        (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL || errno == EPROTONOSUPPORT)) {
      detail::ip_literal("0.0.0.0", hp.port, a);
      fd = bind_listen(a, false, backlog);
    }
  } else {
    if (!detail::ip_literal(hp.host, hp.port, a)) {
      a = detail::resolve(hp.host, hp.port, true, api).front();
    }
    fd = bind_listen(a, false, backlog);
  }
  if (fd < 0) {
    const int e = errno;
    throw std::system_error(e, std::generic_category(),
                            std::string(api) + " " + std::string(address));
  }
  std::uint32_t gen = 0;
  detail::poll_desc* pd = detail::adopt(fd, &gen);
  return detail::net_access::listener(pd, gen);
}

conn dial(std::string_view address, std::chrono::milliseconds timeout) {
  static constexpr const char* api = "weft::net::dial";
  constexpr std::int64_t sane_minimum = 2'000'000'000;  // per address, as Go's partialDeadline
  const std::int64_t start = detail::now_ns();
  std::int64_t deadline = detail::no_deadline;
  if (timeout.count() != 0) {
    const std::int64_t ns =
        timeout.count() > INT64_MAX / 1'000'000 ? INT64_MAX : timeout.count() * 1'000'000;
    deadline = ns >= detail::no_deadline - start ? detail::no_deadline : start + ns;
  }
  const detail::host_port hp = detail::split_host_port(address, api);
  std::vector<detail::sock_address> addrs(1);
  if (hp.host.empty()) {
    detail::ip_literal("127.0.0.1", hp.port, addrs[0]);
  } else if (!detail::ip_literal(hp.host, hp.port, addrs[0])) {
    addrs = detail::resolve(hp.host, hp.port, false, api);
  }
  std::error_code last;
  for (std::size_t i = 0; i < addrs.size(); ++i) {
    const std::int64_t now = detail::now_ns();
    if (deadline != detail::no_deadline && now >= deadline) detail::throw_timeout(api);
    std::int64_t until = deadline;
    if (deadline != detail::no_deadline) {
      // Split what is left among the remaining addresses, so one that
      // never answers cannot eat the whole timeout.
      const std::int64_t left = deadline - now;
      std::int64_t share = left / static_cast<std::int64_t>(addrs.size() - i);
      if (share < sane_minimum) share = std::min(sane_minimum, left);
      until = now + share;
    }
    try {
      return detail::connect_one(addrs[i], until, api);
    } catch (const std::system_error& e) {
      if (e.code() == std::errc::timed_out && until == deadline) throw;
      last = e.code();
    }
  }
  throw std::system_error(last, std::string(api) + " " + std::string(address));
}

void wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
  detail::wait_io(fd, dir_read, deadline, "weft::net::wait_readable");
}

void wait_writable(int fd, std::chrono::steady_clock::time_point deadline) {
  detail::wait_io(fd, dir_write, deadline, "weft::net::wait_writable");
}

}  // namespace net
}  // namespace weft
