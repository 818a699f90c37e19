// net_test.cpp: weft::net and the netpoller.

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net_support.hpp"

TEST_SUITE_BEGIN("net");

using namespace nt;

TEST_CASE("echo: 2,000 concurrent client fibers each complete 50 verified round trips") {
  const int clients = static_cast<int>(test::scaled(2000));
  constexpr int rounds = 50;
  net_runs([&](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    const std::string addr = ln.address();
    echo_service server(ln);
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
    server.stop();
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

TEST_CASE("a read deadline expires with timed_out, clearing it lets the read wait again") {
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

TEST_CASE("a fiber on a spare processor lent to cover a hog can wait on the netpoller") {
  // One worker, hogged by the main fiber: sysmon lends a spare processor,
  // whose index is beyond options::workers, to the fiber queued behind it.
  weft::options o;
  o.workers = 1;
  o.hog_handoff = std::chrono::milliseconds(2);
  int fds[2];
  REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  std::atomic<bool> got{false};
  weft::run(
      [&] {
        weft::go([&] {
          weft::net::wait_readable(fds[0]);
          got = true;
        });
        // Spin without a scheduling point until the waiter has parked.
        while (weft::detail::netpoll_parked() == 0) {
        }
        REQUIRE(::write(fds[1], "x", 1) == 1);
        while (!got.load()) {
        }
      },
      o);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(got.load());
  test::check_teardown();
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

TEST_CASE("several fibers wait on one pipe: all wake, and the registration is dropped after") {
  net_runs([](unsigned) {
    int p[2];
    REQUIRE(::pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
    // Fill the pipe so the write end is not writable.
    std::vector<char> junk(1 << 16, 'j');
    while (::write(p[1], junk.data(), junk.size()) > 0) {
    }
    std::atomic<int> readable{0}, writable{0};
    weft::wait_group wg;
    wg.add(6);
    for (int i = 0; i < 3; ++i) {
      weft::go([&] {
        weft::net::wait_readable(p[0]);  // already readable: returns at once
        readable.fetch_add(1);
        wg.done();
      });
      weft::go([&] {
        weft::net::wait_writable(p[1]);  // waits until the reader drains
        writable.fetch_add(1);
        wg.done();
      });
    }
    while (readable.load() < 3) weft::yield();
    weft::sleep_for(20ms);  // probe only: the writers stay parked
    CHECK(writable.load() == 0);
    while (::read(p[0], junk.data(), junk.size()) > 0) {
    }
    wg.wait();
    CHECK(writable.load() == 3);
    ::close(p[0]);
    ::close(p[1]);
    CHECK(weft::detail::netpoll_registered() == 0);
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

TEST_CASE("operations after close throw operation_canceled, closing twice throws too") {
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
    // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from conn is closed, the case under test
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
    echo_service server(ln);
    conn silent = weft::net::dial(ln.address());
    for (int i = 0; i < 20; ++i) {
      conn c = weft::net::dial(ln.address());
      c.write(bytes("ping"));
      CHECK(read_n(c, 4) == "ping");
    }
    server.stop();
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
    echo_service server(ln);
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
    server.stop();
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
          test::await_parked(4);  // all started and blocked, so all are unwound
        },
        o);
    test::check_teardown();
    CHECK(unwound.load() == 4);
    CHECK(fd_count() == before);
  }
}

TEST_SUITE_END();
