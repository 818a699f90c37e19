#pragma once
// net_support.hpp: helpers shared by the net test suites.

#include <dirent.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "support.hpp"

namespace weft::detail {
// Internal counter (netpoll/netpoll.hpp), for the teardown checks.
std::int64_t netpoll_registered() noexcept;
std::int64_t netpoll_parked() noexcept;  // fibers parked on the netpoller
}  // namespace weft::detail

namespace nt {

using namespace std::chrono_literals;
using weft::net::conn;
using weft::net::listener;
using clk = std::chrono::steady_clock;

inline std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

inline std::string read_n(conn& c, std::size_t n) {
  std::string s(n, '\0');
  c.read_exactly(std::as_writable_bytes(std::span(s)));
  return s;
}

inline int fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// net_runs: for_each_workers, also checking that each run left no
// descriptor open.
template <class Body>
inline void net_runs(Body&& body, std::initializer_list<unsigned> counts = test::worker_counts) {
  for (unsigned w : counts) {
    CAPTURE(w);
    const int before = fd_count();
    weft::options o;
    o.workers = w;
    weft::run([&] { body(w); }, o);
    test::check_teardown();
    CHECK(fd_count() == before);
  }
}

inline std::errc code_of(const std::system_error& e) {
  return static_cast<std::errc>(e.code().value());
}

template <class F>
inline std::errc errc_thrown(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return code_of(e);
  }
  return std::errc{};
}

// echo: serve one connection until end of stream or error.
inline void echo(conn c) {
  std::byte buf[512];
  try {
    for (;;) {
      const std::size_t n = c.read(buf);
      if (n == 0) return;
      c.write(std::span<const std::byte>(buf, n));
    }
  } catch (const std::system_error&) {
  }
}

// serve_echo: accept loop until the listener is closed.
inline void serve_echo(listener* ln) {
  try {
    for (;;) weft::go(echo, ln->accept());
  } catch (const std::system_error& e) {
    CHECK(code_of(e) == std::errc::operation_canceled);
  }
}

// echo_service: serve_echo on its own fiber, over a listener the caller
// owns. stop() (or the destructor) closes the listener and waits for the
// accept loop to end: the loop uses the listener until then, and a test
// that only closed it could destroy the listener under a loop that was
// between two accepts (TSan saw the loop read a dead listener's frame).
class echo_service {
 public:
  explicit echo_service(listener& ln) : ln_(ln) {
    done_.add(1);
    weft::go([this] {
      serve_echo(&ln_);
      done_.done();
    });
  }
  echo_service(const echo_service&) = delete;
  echo_service& operator=(const echo_service&) = delete;
  ~echo_service() {
    if (!stopped_ && std::uncaught_exceptions() == 0) stop();
  }
  void stop() {
    stopped_ = true;
    ln_.close();
    done_.wait();
  }

 private:
  listener& ln_;
  weft::wait_group done_;
  bool stopped_ = false;
};

// connected_pair: a dialed conn and the server side of it.
inline std::pair<conn, conn> connected_pair(listener& ln) {
  conn a = weft::net::dial("127.0.0.1:" + std::to_string(ln.port()));
  conn b = ln.accept();
  return {std::move(a), std::move(b)};
}

}  // namespace nt
