// client.cpp: the weft-load event loop (design note in client.hpp).
#include "client.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>

namespace load {
namespace {

constexpr std::uint32_t kWakeTag = 0xffffffffu;
constexpr unsigned kBurst = 8;  // connects allowed ahead of the rate at any moment

std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

[[noreturn]] void die(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

void fill_message(std::uint32_t id, std::uint64_t seq, unsigned char* out) {
  std::memcpy(out, &id, 4);
  std::memcpy(out + 4, &seq, 8);
  std::uint64_t x = (std::uint64_t{id} << 40) ^ seq;
  for (unsigned i = 12; i < kMessageSize; i += 8) {
    std::uint64_t r = splitmix(x);
    std::memcpy(out + i, &r, kMessageSize - i < 8 ? kMessageSize - i : 8);
  }
}

enum class client_thread::state : std::uint8_t {
  fresh,       // never attempted
  connecting,  // connect() in progress
  handshake,   // connected; first ping in flight (still pending)
  ready,       // opened, no message in flight
  busy,        // opened, one message in flight
  retry_wait,  // a failed attempt; t_deadline is when to try again
  dead,        // given up or dropped after an error
};

struct client_thread::conn {
  int fd = -1;
  std::uint32_t id = 0;
  state st = state::fresh;
  std::uint8_t sent = 0;  // bytes of the current ping written
  std::uint8_t got = 0;   // bytes of its echo received
  std::uint8_t attempts = 0;
  std::uint64_t seq = 0;
  std::int64_t t_send = 0;      // when the current ping was first written
  std::int64_t t_deadline = 0;  // connecting/handshake: give up; retry_wait: try again
  unsigned char rx[kMessageSize];
};

client_thread::client_thread(const config& cfg, const std::atomic<int>& ph, unsigned first,
                             unsigned stride, unsigned count)
    : cfg_(cfg), phase_(ph), conns_(count) {
  for (unsigned i = 0; i < count; ++i) conns_[i].id = first + i * stride;
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) die("epoll_create1");
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) die("eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kWakeTag;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) die("epoll_ctl");
  rate_per_ns_ = cfg.connect_rate / cfg.threads / 1e9;
}

client_thread::~client_thread() {
  for (conn& c : conns_)
    if (c.fd >= 0) ::close(c.fd);
  ::close(wakefd_);
  ::close(epfd_);
}

void client_thread::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wakefd_, &one, sizeof one);
}

void client_thread::run() {
  constexpr int kMaxEvents = 512;
  epoll_event evs[kMaxEvents];
  int last = static_cast<int>(phase::connect);
  connect_start_ns_ = now_ns();
  std::int64_t next_scan = connect_start_ns_;
  for (;;) {
    int ph = phase_.load(std::memory_order_acquire);  // pairs with the coordinator's release
    if (ph != last) {
      if (last == static_cast<int>(phase::connect)) start_run();
      last = ph;
    }
    if (ph == static_cast<int>(phase::stop)) break;
    int timeout = -1;
    if (ph == static_cast<int>(phase::connect)) {
      std::int64_t now = now_ns();
      start_connects(now);
      if (now >= next_scan) {
        check_timeouts(now);
        next_scan = now + 100'000'000;
      }
      timeout = (next_fresh_ < conns_.size() || !retry_.empty()) ? 1 : 100;
    }
    int n = epoll_wait(epfd_, evs, kMaxEvents, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u32 == kWakeTag) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wakefd_, &v, sizeof v);
        continue;
      }
      on_event(conns_[evs[i].data.u32], evs[i].events);
    }
    live_.outstanding.store(outstanding_, std::memory_order_relaxed);
  }
  for (conn& c : conns_)
    if (c.st == state::busy) ++totals_.unanswered;
  for (conn& c : conns_) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }
}

// start_connects: new attempts (due retries first), paced to connect_rate and
// bounded by max_pending.
void client_thread::start_connects(std::int64_t now) {
  double budget = rate_per_ns_ * double(now - connect_start_ns_) + kBurst;
  while (double(attempts_started_) < budget && pending_ < cfg_.max_pending) {
    conn* c = nullptr;
    for (std::size_t i = 0; i < retry_.size(); ++i) {
      if (conns_[retry_[i]].t_deadline <= now) {
        c = &conns_[retry_[i]];
        retry_[i] = retry_.back();
        retry_.pop_back();
        break;
      }
    }
    if (c == nullptr && next_fresh_ < conns_.size()) c = &conns_[next_fresh_++];
    if (c == nullptr) return;
    start_one(*c, now);
  }
}

void client_thread::start_one(conn& c, std::int64_t now) {
  ++attempts_started_;
  ++c.attempts;
  ++pending_;
  c.st = state::connecting;
  c.t_deadline = now + static_cast<std::int64_t>(cfg_.connect_timeout_s * 1e9);
  c.fd = ::socket(cfg_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    if (errno == EMFILE || errno == ENFILE) die("socket (raise the descriptor limit)");
    fail_attempt(c, now);
    return;
  }
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u32 = static_cast<std::uint32_t>(&c - conns_.data());
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) die("epoll_ctl");
  if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&cfg_.addr), cfg_.addr_len) == 0) {
    on_connected(c);
  } else if (errno != EINPROGRESS) {
    fail_attempt(c, now);
  }
}

void client_thread::on_event(conn& c, std::uint32_t events) {
  switch (c.st) {
    case state::connecting: {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        fail_attempt(c, now_ns());
      } else if (events & EPOLLOUT) {
        on_connected(c);
      }
      return;
    }
    case state::handshake:
    case state::busy:
      if ((events & EPOLLOUT) && c.sent < kMessageSize) flush(c);
      if (c.fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) receive(c);
      return;
    case state::ready: {
      if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
      unsigned char scratch[kMessageSize];
      ssize_t n = ::recv(c.fd, scratch, sizeof scratch, 0);
      if (n > 0) {
        drop(c, &totals::verify_errors);  // bytes nobody asked for
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        drop(c, &totals::io_errors);
      }
      return;
    }
    default:
      return;  // a stale event for a descriptor closed earlier in this batch
  }
}

void client_thread::on_connected(conn& c) {
  c.st = state::handshake;
  c.seq = 0;
  send_ping(c);
}

void client_thread::send_ping(conn& c) {
  c.sent = 0;
  c.got = 0;
  c.t_send = now_ns();
  flush(c);
}

void client_thread::flush(conn& c) {
  unsigned char buf[kMessageSize];
  fill_message(c.id, c.seq, buf);
  while (c.sent < kMessageSize) {
    ssize_t n = ::send(c.fd, buf + c.sent, kMessageSize - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent = static_cast<std::uint8_t>(c.sent + n);
    } else if (errno == EAGAIN) {
      return;  // EPOLLOUT will call again
    } else if (errno != EINTR) {
      on_error(c);
      return;
    }
  }
}

// receive: asks for exactly the missing bytes; a short read drained the socket.
void client_thread::receive(conn& c) {
  for (;;) {
    ssize_t n = ::recv(c.fd, c.rx + c.got, kMessageSize - c.got, 0);
    if (n > 0) {
      c.got = static_cast<std::uint8_t>(c.got + n);
      if (c.got == kMessageSize) complete(c);
      return;
    }
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0 && errno == EINTR) continue;
    on_error(c);
    return;
  }
}

void client_thread::complete(conn& c) {
  unsigned char want[kMessageSize];
  fill_message(c.id, c.seq, want);
  if (c.sent != kMessageSize || std::memcmp(want, c.rx, kMessageSize) != 0) {
    drop(c, &totals::verify_errors);
    return;
  }
  std::int64_t now = now_ns();
  ++messages_;
  int ph = phase_.load(std::memory_order_relaxed);  // L2; the window is exact to one event
  ++c.seq;
  if (c.st == state::handshake) {
    --pending_;
    ++totals_.opened;
    live_.opened.store(totals_.opened, std::memory_order_relaxed);
    c.st = state::ready;
  } else {
    --outstanding_;
    c.st = state::ready;
    if (ph == static_cast<int>(phase::measure)) {
      ++totals_.measured;
      totals_.rtt_ns.record(static_cast<std::uint64_t>(now - c.t_send));
    }
  }
  live_.messages.store(messages_, std::memory_order_relaxed);
  if (ph == static_cast<int>(phase::run) || ph == static_cast<int>(phase::measure)) {
    c.st = state::busy;
    ++outstanding_;
    send_ping(c);
  }
}

// start_run: the connect phase is over; every opened connection starts its ping-pong.
void client_thread::start_run() {
  std::int64_t now = now_ns();
  for (conn& c : conns_) {
    if (c.st == state::connecting || c.st == state::handshake) {
      fail_attempt(c, now);  // not opened in time: counted, and no retry (phase is past connect)
    } else if (c.st == state::retry_wait || c.st == state::fresh) {
      c.st = state::dead;
      ++totals_.failed;
    }
  }
  retry_.clear();
  live_.failed.store(totals_.failed, std::memory_order_relaxed);
  for (conn& c : conns_) {
    if (c.st != state::ready) continue;
    c.st = state::busy;
    ++outstanding_;
    send_ping(c);
  }
}

void client_thread::check_timeouts(std::int64_t now) {
  for (conn& c : conns_) {
    if ((c.st == state::connecting || c.st == state::handshake) && c.t_deadline <= now)
      fail_attempt(c, now);
  }
}

void client_thread::close_conn(conn& c) {
  ::close(c.fd);  // also leaves the epoll set
  c.fd = -1;
  if (c.st == state::connecting || c.st == state::handshake) --pending_;
  if (c.st == state::busy) --outstanding_;
}

void client_thread::count_error() { live_.errors.fetch_add(1, std::memory_order_relaxed); }

void client_thread::fail_attempt(conn& c, std::int64_t now) {
  close_conn(c);
  ++totals_.connect_errors;
  count_error();
  if (c.attempts <= cfg_.connect_retries &&
      phase_.load(std::memory_order_relaxed) == static_cast<int>(phase::connect)) {
    c.st = state::retry_wait;
    c.t_deadline = now + (std::int64_t{50'000'000} << (c.attempts - 1));
    retry_.push_back(static_cast<unsigned>(&c - conns_.data()));
  } else {
    c.st = state::dead;
    ++totals_.failed;
    live_.failed.store(totals_.failed, std::memory_order_relaxed);
  }
}

void client_thread::drop(conn& c, std::uint64_t totals::*counter) {
  bool was_pending = c.st == state::connecting || c.st == state::handshake;
  close_conn(c);
  ++(totals_.*counter);
  count_error();
  c.st = state::dead;
  if (was_pending) {
    ++totals_.failed;
    live_.failed.store(totals_.failed, std::memory_order_relaxed);
  }
}

// on_error: a system call failed on c. During the handshake that is a failed
// attempt (retried); on an open connection the connection is lost.
void client_thread::on_error(conn& c) {
  if (c.st == state::connecting || c.st == state::handshake) {
    fail_attempt(c, now_ns());
  } else {
    drop(c, &totals::io_errors);
  }
}

}  // namespace load
