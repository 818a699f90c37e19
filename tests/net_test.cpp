// net_test.cpp: weft::net and the netpoller.

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace weft::detail {
// Internal counters (netpoll/netpoll.hpp), for the teardown checks.
std::int64_t netpoll_registered() noexcept;
}  // namespace weft::detail

TEST_SUITE_BEGIN("net");

namespace {

using namespace std::chrono_literals;
using weft::net::conn;
using weft::net::listener;
using clk = std::chrono::steady_clock;

std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string read_n(conn& c, std::size_t n) {
  std::string s(n, '\0');
  c.read_exactly(std::as_writable_bytes(std::span(s)));
  return s;
}

int fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// net_runs: for_each_workers, also checking that each run left no
// descriptor open and nothing registered or parked on the netpoller.
template <class Body>
void net_runs(Body&& body, std::initializer_list<unsigned> counts = test::worker_counts) {
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

std::errc code_of(const std::system_error& e) { return static_cast<std::errc>(e.code().value()); }

template <class F>
std::errc errc_thrown(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return code_of(e);
  }
  return std::errc{};
}

// echo: serve one connection until end of stream or error.
void echo(conn c) {
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
void serve_echo(listener* ln) {
  try {
    for (;;) weft::go(echo, ln->accept());
  } catch (const std::system_error& e) {
    CHECK(code_of(e) == std::errc::operation_canceled);
  }
}

// connected_pair: a dialed conn and the server side of it.
std::pair<conn, conn> connected_pair(listener& ln) {
  conn a = weft::net::dial("127.0.0.1:" + std::to_string(ln.port()));
  conn b = ln.accept();
  return {std::move(a), std::move(b)};
}

}  // namespace

TEST_CASE("echo: 2,000 concurrent client fibers each complete 50 verified round trips") {
  const int clients = static_cast<int>(test::scaled(2000));
  constexpr int rounds = 50;
  net_runs([&](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    const std::string addr = ln.address();
    weft::go(serve_echo, &ln);
    std::atomic<int> ok{0};
    weft::wait_group wg;
    wg.add(clients);
    for (int i = 0; i < clients; ++i) {
      weft::go([&, i] {
        conn c = weft::net::dial(addr);
        for (int r = 0; r < rounds; ++r) {
          char msg[40];
          std::snprintf(msg, sizeof msg, "client %06d round %06d.......", i, r);
          c.write(bytes(std::string_view(msg, 31)));
          if (read_n(c, 31) != std::string_view(msg, 31)) break;
          if (r == rounds - 1) ok.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
    CHECK(ok.load() == clients);
    CHECK(weft::stats().netpoll_wakeups > 0);
    ln.close();
  });
}

TEST_CASE("read returns 0 at end of stream and read_exactly throws unexpected_eof") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::size_t peer_read = 99;
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      b.write(bytes("abc"));
      b.shutdown_write();
      std::byte x[1];
      peer_read = b.read(x);  // 0 once a closes, after its reads
      wg.done();
    });
    std::byte buf[8];
    CHECK_THROWS_AS(a.read_exactly(buf), weft::net::unexpected_eof);
    CHECK(a.read(buf) == 0);
    CHECK(std::memcmp(buf, "abc", 3) == 0);
    a.close();
    wg.wait();
    CHECK(peer_read == 0);
  });
}

TEST_CASE("a read deadline expires with timed_out; clearing it lets the read wait again") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::byte buf[4];
    const auto t0 = clk::now();
    a.set_read_deadline(t0 + 30ms);
    CHECK(errc_thrown([&] { a.read(buf); }) == std::errc::timed_out);
    CHECK(clk::now() - t0 >= 30ms);
    // A deadline in the past fails at once, even with data available.
    b.write(bytes("x"));
    a.set_read_deadline(clk::now() - 1ms);
    CHECK(errc_thrown([&] { a.read(buf); }) == std::errc::timed_out);
    a.set_read_deadline(clk::time_point::max());
    CHECK(a.read(buf) == 1);
    // Writes are unaffected by a read deadline.
    a.set_read_deadline(clk::now() - 1ms);
    a.write(bytes("y"));
    CHECK(read_n(b, 1) == "y");
  });
}

TEST_CASE("set_deadline from another fiber wakes a read that is already blocked") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::atomic<int> outcome{0};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      std::byte buf[4];
      outcome = static_cast<int>(errc_thrown([&] { a.read(buf); }));
      wg.done();
    });
    weft::sleep_for(20ms);  // probe only: the reader has not returned
    CHECK(outcome.load() == 0);
    a.set_deadline(clk::now() + 10ms);
    wg.wait();
    CHECK(outcome.load() == static_cast<int>(std::errc::timed_out));
  });
}

TEST_CASE("a write blocked on a full socket buffer honours its write deadline") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::vector<std::byte> big(1 << 20);
    a.set_write_deadline(clk::now() + 50ms);
    // Nobody reads b: the buffers fill, then the write times out.
    CHECK(errc_thrown([&] {
            for (;;) a.write(big);
          }) == std::errc::timed_out);
  });
}

TEST_CASE("dial to a port nobody listens on throws ECONNREFUSED") {
  net_runs([](unsigned) {
    std::uint16_t port;
    {
      listener ln = weft::net::listen("127.0.0.1:0");
      port = ln.port();
    }
    CHECK(errc_thrown([&] { weft::net::dial("127.0.0.1:" + std::to_string(port)); }) ==
          std::errc::connection_refused);
  });
}

TEST_CASE("dial times out against a listener whose accept queue is full") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0", 0);
        const std::string addr = ln.address();
        std::vector<conn> filler;
        std::errc got{};
        // Fill the queue (nobody accepts); a later SYN is dropped, so that
        // dial hangs until its timeout.
        for (int i = 0; i < 16 && got == std::errc{}; ++i) {
          const auto t0 = clk::now();
          try {
            filler.push_back(weft::net::dial(addr, 100ms));
          } catch (const std::system_error& e) {
            got = code_of(e);
            CHECK(clk::now() - t0 >= 100ms);
            CHECK(clk::now() - t0 < 2s);
          }
        }
        CHECK(got == std::errc::timed_out);
      },
      {1, 2});
}

TEST_CASE("IPv6 loopback: listen on [::1]:0, dial it, and addresses print bracketed") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("[::1]:0");
    CHECK(ln.address() == "[::1]:" + std::to_string(ln.port()));
    conn a = weft::net::dial(ln.address());
    conn b = ln.accept();
    CHECK(a.remote_address() == ln.address());
    CHECK(b.local_address() == ln.address());
    CHECK(b.remote_address() == a.local_address());
    CHECK(a.local_address().rfind("[::1]:", 0) == 0);
    a.write(bytes("v6"));
    CHECK(read_n(b, 2) == "v6");
  });
}

TEST_CASE("listen(\":0\") accepts IPv4 and IPv6 clients, and dial resolves localhost") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen(":0");
        const std::string port = std::to_string(ln.port());
        CHECK(ln.address() == "[::]:" + port);
        // No CAPTURE here: doctest keeps INFO/CAPTURE scopes in a
        // thread_local list, and a fiber may resume on another thread.
        for (const std::string host : {"127.0.0.1", "[::1]", "localhost"}) {
          conn a = weft::net::dial(host + ":" + port);
          conn b = ln.accept();
          a.write(bytes("hi"));
          const bool echoed = read_n(b, 2) == "hi";
          CHECK_MESSAGE(echoed, host);
          if (host == "127.0.0.1") {
            CHECK(b.remote_address() == a.local_address());  // v4-mapped prints as IPv4
            CHECK(a.local_address().rfind("127.0.0.1:", 0) == 0);
          }
        }
      },
      {1, 2});
}

TEST_CASE("malformed addresses and unknown hosts throw system_error") {
  net_runs(
      [](unsigned) {
        for (const char* bad : {"127.0.0.1", "::1:80", "[::1]80", "host:99999", "host:x"}) {
          const std::errc l = errc_thrown([&] { weft::net::listen(bad); });
          const std::errc d = errc_thrown([&] { weft::net::dial(bad); });
          CHECK_MESSAGE(l == std::errc::invalid_argument, bad);
          CHECK_MESSAGE(d == std::errc::invalid_argument, bad);
        }
        CHECK_THROWS_AS(weft::net::dial("no-such-host.invalid:80"), std::system_error);
      },
      {1});
}

TEST_CASE("wait_readable on a pipe wakes when the other end writes, and honours its deadline") {
  net_runs([](unsigned) {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    CHECK(errc_thrown([&] { weft::net::wait_readable(p[0], clk::now() + 20ms); }) ==
          std::errc::timed_out);
    std::atomic<bool> woke{false};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      weft::net::wait_readable(p[0]);
      woke = true;
      wg.done();
    });
    weft::sleep_for(20ms);  // probe only
    CHECK_FALSE(woke.load());
    CHECK(::write(p[1], "z", 1) == 1);
    wg.wait();
    CHECK(woke.load());
    weft::net::wait_writable(p[1]);  // an empty pipe is writable at once
    ::close(p[0]);
    ::close(p[1]);
    CHECK(weft::detail::netpoll_registered() == 0);  // borrowed registrations are gone
  });
}

TEST_CASE("closing a conn from another fiber wakes its blocked reader with operation_canceled") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::atomic<int> outcome{0};
    weft::wait_group wg;
    wg.add(2);
    weft::go([&] {
      std::byte buf[4];
      outcome = static_cast<int>(errc_thrown([&] { a.read(buf); }));
      wg.done();
    });
    weft::go([&] {  // a second reader queued behind the first
      std::byte buf[4];
      CHECK(errc_thrown([&] { a.read(buf); }) == std::errc::operation_canceled);
      wg.done();
    });
    weft::sleep_for(20ms);  // probe only
    CHECK(outcome.load() == 0);
    a.close();
    wg.wait();
    CHECK(outcome.load() == static_cast<int>(std::errc::operation_canceled));
    // The peer sees the close.
    std::byte buf[4];
    CHECK(b.read(buf) == 0);
  });
}

TEST_CASE("operations after close throw operation_canceled; closing twice throws too") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    a.close();
    std::byte buf[4];
    CHECK(errc_thrown([&] { a.read(buf); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { a.write(bytes("x")); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { a.set_deadline(clk::now()); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { a.remote_address(); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { a.fd(); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { a.close(); }) == std::errc::operation_canceled);
    conn moved = std::move(b);
    CHECK(errc_thrown([&] { b.read(buf); }) == std::errc::operation_canceled);
    CHECK(moved.read(buf) == 0);
    ln.close();
    CHECK(errc_thrown([&] { ln.accept(); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { ln.port(); }) == std::errc::operation_canceled);
    CHECK(errc_thrown([&] { ln.close(); }) == std::errc::operation_canceled);
    conn never;
    CHECK(errc_thrown([&] { never.read(buf); }) == std::errc::operation_canceled);
  });
}

TEST_CASE("listener::close wakes a fiber blocked in accept") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    std::atomic<int> outcome{0};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      outcome = static_cast<int>(errc_thrown([&] { ln.accept(); }));
      wg.done();
    });
    weft::sleep_for(20ms);  // probe only
    CHECK(outcome.load() == 0);
    ln.close();
    wg.wait();
    CHECK(outcome.load() == static_cast<int>(std::errc::operation_canceled));
  });
}

TEST_CASE("a peer reset during a long write is an exception, not a SIGPIPE") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    std::vector<std::byte> big(1 << 20);
    weft::go([b = std::move(b)]() mutable {
      std::byte buf[1024];
      b.read(buf);  // let some data arrive, then reset: unread data makes close send RST
      const linger lg{1, 0};
      ::setsockopt(b.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      b.close();
    });
    const std::errc e = errc_thrown([&] {
      for (;;) a.write(big);
    });
    CHECK((e == std::errc::connection_reset || e == std::errc::broken_pipe));
  });
}

TEST_CASE("a client that connects and sends nothing does not hold up other connections") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    weft::go(serve_echo, &ln);
    conn silent = weft::net::dial(ln.address());
    for (int i = 0; i < 20; ++i) {
      conn c = weft::net::dial(ln.address());
      c.write(bytes("ping"));
      CHECK(read_n(c, 4) == "ping");
    }
    ln.close();
  });
}

TEST_CASE("concurrent writers on one conn never interleave their messages") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    constexpr int writers = 8, each = 20;
    constexpr std::size_t size = 64 * 1024;
    weft::wait_group wg;
    wg.add(writers);
    for (int w = 0; w < writers; ++w) {
      weft::go([&, w] {
        std::vector<std::byte> msg(size, static_cast<std::byte>('a' + w));
        for (int i = 0; i < each; ++i) a.write(msg);
        wg.done();
      });
    }
    std::string got(size, '\0');
    bool whole = true;
    for (int i = 0; i < writers * each; ++i) {
      b.read_exactly(std::as_writable_bytes(std::span(got)));
      whole = whole && got.find_first_not_of(got[0]) == std::string::npos;
    }
    CHECK(whole);
    wg.wait();
  });
}

TEST_CASE("network wakeups reach fibers while every worker is busy with other fibers") {
  net_runs([](unsigned w) {
    listener ln = weft::net::listen("127.0.0.1:0");
    weft::go(serve_echo, &ln);
    conn c = weft::net::dial(ln.address());
    std::atomic<bool> stop{false};
    weft::wait_group busy;
    busy.add(static_cast<int>(w));
    for (unsigned i = 0; i < w; ++i) {
      weft::go([&] {  // keeps its worker from ever going idle
        while (!stop.load()) weft::yield();
        busy.done();
      });
    }
    for (int i = 0; i < 20; ++i) {
      c.write(bytes("busy"));
      CHECK(read_n(c, 4) == "busy");
    }
    stop = true;
    busy.wait();
    ln.close();
  });
}

TEST_CASE("plain threads use conns with and without a running runtime") {
  // No runtime: the calls block the thread in poll(2).
  {
    listener ln = weft::net::listen("127.0.0.1:0");
    std::thread client([port = ln.port()] {
      conn c = weft::net::dial("127.0.0.1:" + std::to_string(port));
      c.write(bytes("thread"));
      CHECK(read_n(c, 6) == "THREAD");
      std::byte buf[4];
      c.set_read_deadline(clk::now() + 20ms);
      CHECK(errc_thrown([&] { c.read(buf); }) == std::errc::timed_out);
    });
    conn s = ln.accept();
    CHECK(read_n(s, 6) == "thread");
    s.write(bytes("THREAD"));
    client.join();
    // A thread blocked in accept wakes when another thread closes the listener.
    std::atomic<int> outcome{0};
    std::thread acceptor([&] { outcome = static_cast<int>(errc_thrown([&] { ln.accept(); })); });
    std::this_thread::sleep_for(20ms);  // probe only
    CHECK(outcome.load() == 0);
    ln.close();
    acceptor.join();
    CHECK(outcome.load() == static_cast<int>(std::errc::operation_canceled));
  }
  // With a runtime: a thread blocked in read is woken by a fiber's close.
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        std::atomic<int> outcome{0};
        std::atomic<bool> started{false};
        std::thread reader([&] {
          std::byte buf[4];
          started = true;
          outcome = static_cast<int>(errc_thrown([&] { a.read(buf); }));
        });
        while (!started.load()) weft::sleep_for(1ms);
        weft::sleep_for(20ms);  // probe only
        CHECK(outcome.load() == 0);
        a.close();
        weft::blocking([&] { reader.join(); });
        CHECK(outcome.load() == static_cast<int>(std::errc::operation_canceled));
      },
      {1, 2});
}

TEST_CASE("at shutdown fibers blocked in accept and read are unwound and their sockets closed") {
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    const int before = fd_count();
    std::atomic<int> unwound{0};
    std::atomic<conn*> published{nullptr};
    struct count_unwind {
      std::atomic<int>* n;
      ~count_unwind() { n->fetch_add(1); }
    };
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          auto ln = std::make_shared<listener>(weft::net::listen("127.0.0.1:0"));
          auto [a, b] = connected_pair(*ln);
          weft::go([ln, &unwound] {
            count_unwind c{&unwound};
            ln->accept();
          });
          // A reader blocked on a conn owned by another parked fiber: the
          // owner's unwinding closes the conn and readies the reader.
          weft::go([a = std::move(a), &published, &unwound]() mutable {
            count_unwind c{&unwound};
            published = &a;
            weft::sleep_for(std::chrono::hours(1));
          });
          weft::go([&published, &unwound] {
            count_unwind c{&unwound};
            while (published.load() == nullptr) weft::sleep_for(1ms);
            std::byte buf[4];
            published.load()->read(buf);
          });
          weft::go([b = std::move(b), &unwound]() mutable {
            count_unwind c{&unwound};
            std::byte buf[4];
            b.read(buf);
          });
          weft::sleep_for(20ms);
        },
        o);
    test::check_teardown();
    CHECK(unwound.load() == 4);
    CHECK(fd_count() == before);
  }
}

TEST_CASE("stress: fibers close and reopen sockets while others wait on them") {
  const int churners = static_cast<int>(test::scaled(16, 4));
  const int iterations = static_cast<int>(test::scaled(400));
  net_runs([&](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    weft::go(serve_echo, &ln);
    const std::string addr = ln.address();
    std::atomic<int> wrong{0}, done{0};
    weft::wait_group wg;
    wg.add(churners * 2);
    for (int i = 0; i < churners; ++i) {
      // Churner: a reader parks on a fresh conn while a closer cancels it
      // at a random moment; descriptor numbers are reused at once.
      weft::go([&, i] {
        std::uint32_t rng = 0x9E3779B9u * static_cast<std::uint32_t>(i + 1);
        for (int k = 0; k < iterations; ++k) {
          auto c = std::make_shared<conn>(weft::net::dial(addr));
          weft::wait_group inner;
          inner.add(1);
          weft::go([&, c] {
            std::byte buf[8];
            const std::errc e = errc_thrown([&] { c->read(buf); });
            if (e != std::errc::operation_canceled) wrong.fetch_add(1);
            inner.done();
          });
          rng = rng * 1664525u + 1013904223u;
          if ((rng >> 28) % 2 == 0) weft::yield();
          c->close();
          inner.wait();
        }
        done.fetch_add(1);
        wg.done();
      });
      // Talker: round trips on conns that open and close constantly, so
      // a stale wakeup or a wrong record would show as a wrong reply.
      weft::go([&, i] {
        for (int k = 0; k < iterations; ++k) {
          conn c = weft::net::dial(addr);
          const std::string msg = std::to_string(i) + ":" + std::to_string(k);
          c.write(bytes(msg));
          if (read_n(c, msg.size()) != msg) wrong.fetch_add(1);
        }
        done.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
    CHECK(wrong.load() == 0);
    CHECK(done.load() == churners * 2);
    ln.close();
  });
}

TEST_CASE("stress: pipes closed and reopened while fibers wait_readable on others") {
  const int pairs = static_cast<int>(test::scaled(32, 4));
  const int iterations = static_cast<int>(test::scaled(300));
  net_runs([&](unsigned) {
    std::atomic<int> wrong{0};
    weft::wait_group wg;
    wg.add(pairs);
    for (int i = 0; i < pairs; ++i) {
      weft::go([&] {
        for (int k = 0; k < iterations; ++k) {
          int p[2];
          if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
            wrong.fetch_add(1);
            break;
          }
          weft::wait_group inner;
          inner.add(1);
          weft::go([&] {
            weft::net::wait_readable(p[0]);
            char x = 0;
            if (::read(p[0], &x, 1) != 1 || x != 'k') wrong.fetch_add(1);
            inner.done();
          });
          weft::yield();
          if (::write(p[1], "k", 1) != 1) wrong.fetch_add(1);
          inner.wait();
          ::close(p[0]);
          ::close(p[1]);
        }
        wg.done();
      });
    }
    wg.wait();
    CHECK(wrong.load() == 0);
  });
}

namespace {

// in_child: run `body` in a forked child process and return its exit
// status; the child reports failures on stderr and exits non-zero.
template <class Body>
int in_child(Body&& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 1;
    try {
      rc = body() ? 0 : 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: exception: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define CHILD_EXPECT(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "child: %s:%d: %s failed\n", __FILE__, __LINE__, #cond); \
      ok = false;                                                                   \
    }                                                                               \
  } while (0)

// open_fds: the numbers of this process's open descriptors.
std::vector<int> open_fds() {
  std::vector<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != ::dirfd(d)) fds.push_back(fd);
  }
  ::closedir(d);
  return fds;
}

}  // namespace

TEST_CASE("accept backs off at EMFILE without spinning and serves again once descriptors free up") {
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    const int status = in_child([w] {
      bool ok = true;
      weft::options o;
      o.workers = w;
      weft::run(
          [&] {
            constexpr int clients = 8;
            listener ln = weft::net::listen("127.0.0.1:0");
            std::vector<conn> cs;  // connected by the kernel, waiting in the backlog
            for (int i = 0; i < clients; ++i) cs.push_back(weft::net::dial(ln.address()));
            // Lower the limit so that exactly `room` descriptor numbers are
            // free below it (new descriptors take the lowest free number).
            const std::vector<int> fds = open_fds();
            constexpr int room = 2;
            int limit = 0;
            for (int free_below = 0; free_below < room; ++limit) {
              if (std::find(fds.begin(), fds.end(), limit) == fds.end()) ++free_below;
            }
            rlimit saved{};
            ::getrlimit(RLIMIT_NOFILE, &saved);
            const rlimit lowered{static_cast<rlim_t>(limit), saved.rlim_max};
            CHILD_EXPECT(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
            std::vector<conn> held;
            std::atomic<int> accepted{0};
            weft::mutex mu;
            weft::go([&] {
              try {
                for (;;) {
                  conn c = ln.accept();
                  std::lock_guard<weft::mutex> lk(mu);
                  held.push_back(std::move(c));
                  accepted.fetch_add(1);
                }
              } catch (const std::system_error&) {
              }
            });
            const std::int64_t cpu0 = test::process_cpu_ns();
            weft::sleep_for(300ms);
            const std::int64_t cpu = test::process_cpu_ns() - cpu0;
            CHILD_EXPECT(accepted.load() == room);  // stuck at EMFILE ...
            CHILD_EXPECT(cpu < 100'000'000);        // ... backing off, not spinning
            auto wait_accepted = [&](int n) {
              const auto until = clk::now() + 10s;
              while (accepted.load() < n && clk::now() < until) weft::sleep_for(2ms);
              return accepted.load();
            };
            {
              std::lock_guard<weft::mutex> lk(mu);
              held.clear();  // free descriptors: accept resumes ...
            }
            CHILD_EXPECT(wait_accepted(2 * room) == 2 * room);  // ... until they run out again
            weft::sleep_for(50ms);                              // probe only
            CHILD_EXPECT(accepted.load() == 2 * room);
            ::setrlimit(RLIMIT_NOFILE, &saved);
            CHILD_EXPECT(wait_accepted(clients) == clients);
            cs.back().write(bytes("after"));
            {
              std::lock_guard<weft::mutex> lk(mu);
              CHILD_EXPECT(!held.empty() && read_n(held.back(), 5) == "after");
            }
            ln.close();
          },
          o);
      return ok;
    });
    CHECK(status == 0);
  }
}
