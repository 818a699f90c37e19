// context_test.cpp: weft::context: the cancellation tree, deadlines, done(),
// and cancellation of fibers blocked in dial, accept, read, write and sleep.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "net_support.hpp"

TEST_SUITE_BEGIN("context");

using namespace nt;

namespace {

constexpr std::initializer_list<unsigned> workers = {1, 2, 8};

bool is_done(const weft::chan<std::monostate>& c) {
  bool done = false;
  weft::select(weft::recv_case(c, [&](std::optional<std::monostate> v) { done = !v; }),
               weft::default_case());
  return done;
}

// cancel_while_blocked: run op(ctx) in a fiber, wait until it is parked,
// check that it is still blocked, cancel, and return what it reported.
template <class Op>
std::error_code cancel_while_blocked(Op op, std::uint64_t parked_before = 0) {
  weft::context ctx = weft::with_cancel(weft::background());
  weft::chan<std::error_code> result(1);
  weft::go([&, ctx] { result.send(op(ctx)); });
  test::await_parked(parked_before + 1);
  CHECK(result.size() == 0);
  ctx.cancel();
  return *result.recv();
}

}  // namespace

TEST_CASE("cancel makes a context and its descendants done, never its parent") {
  test::for_each_workers(
      [](unsigned) {
        weft::context root = weft::with_cancel(weft::background());
        weft::context child = weft::with_cancel(root);
        weft::context grandchild = weft::with_timeout(child, std::chrono::hours(1));
        weft::context sibling = weft::with_cancel(root);
        weft::chan<std::monostate> done = grandchild.done();
        CHECK(!is_done(done));
        CHECK(!grandchild.err());
        child.cancel();
        CHECK(child.err() == weft::errc::canceled);
        CHECK(grandchild.err() == weft::errc::canceled);
        CHECK(grandchild.err() == std::errc::operation_canceled);
        CHECK(is_done(done));
        CHECK(is_done(grandchild.done()));
        CHECK(!root.err());
        CHECK(!sibling.err());
        // Done is final; a child of a done context is born done.
        child.cancel();
        CHECK(child.err() == weft::errc::canceled);
        CHECK(weft::with_cancel(child).err() == weft::errc::canceled);
        CHECK(weft::with_cancel(child).err().message() == "context canceled");
        // background() is never done; its done() is the nil channel.
        weft::background().cancel();
        CHECK(!weft::background().err());
        CHECK(!weft::background().deadline());
        CHECK(!is_done(weft::background().done()));
      },
      {1, 2});
}

TEST_CASE("a deadline makes the context done with deadline_exceeded and closes done()") {
  test::for_each_workers(
      [](unsigned) {
        weft::context parent = weft::with_cancel(weft::background());
        weft::context ctx = weft::with_timeout(parent, 20ms);
        weft::context child = weft::with_cancel(ctx);
        REQUIRE(child.deadline());
        CHECK(*child.deadline() == *ctx.deadline());
        CHECK(!child.done().recv());  // closed by the timer
        CHECK(ctx.err() == weft::errc::deadline_exceeded);
        CHECK(ctx.err() == std::errc::timed_out);
        CHECK(child.err() == weft::errc::deadline_exceeded);
        CHECK(!parent.err());
        ctx.cancel();  // too late: the reason stays
        CHECK(ctx.err() == weft::errc::deadline_exceeded);
        // A deadline in the past: done at once; a later deadline than the
        // parent's keeps the parent's.
        CHECK(weft::with_deadline(parent, clk::now() - 1s).err() == weft::errc::deadline_exceeded);
        weft::context near = weft::with_timeout(parent, std::chrono::hours(1));
        weft::context far = weft::with_timeout(near, std::chrono::hours(2));
        CHECK(*far.deadline() == *near.deadline());
      },
      {1, 2, 8});
}

TEST_CASE("an abandoned context with a long timeout leaves no timer behind") {
  for (unsigned w : {1u, 2u}) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    weft::run(
        [] {
          weft::context parent = weft::with_timeout(weft::background(), std::chrono::hours(1));
          for (int i = 0; i < 1000; ++i) {
            weft::context c = weft::with_timeout(parent, std::chrono::hours(2));
            weft::context d = weft::with_timeout(weft::background(), std::chrono::hours(2));
            if (i % 2 == 0) d.cancel();
          }
        },
        o);
    test::check_teardown();
    CHECK(weft::detail::last_teardown().timers_disposed == 0);
  }
}

TEST_CASE("a context outlives its run: err() sees the deadline, a later run closes done()") {
  weft::context ctx;
  weft::run([&] { ctx = weft::with_timeout(weft::background(), 30ms); });
  test::check_teardown();
  weft::run([&] {
    CHECK(!ctx.done().recv());  // the timer restarts in this run
    CHECK(ctx.err() == weft::errc::deadline_exceeded);
  });
  test::check_teardown();
  weft::context late = weft::with_deadline(weft::background(), clk::now() + 1ms);
  while (!late.err()) std::this_thread::yield();  // no runtime: the clock decides
  CHECK(late.err() == weft::errc::deadline_exceeded);
}

TEST_CASE("cancellation reaches a fiber blocked in sleep_for") {
  test::for_each_workers(
      [](unsigned) {
        const std::error_code ec = cancel_while_blocked([](const weft::context& ctx) {
          std::error_code e;
          weft::sleep_for(ctx, std::chrono::hours(1), e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
        std::error_code ok;
        weft::sleep_for(weft::with_cancel(weft::background()), 1ms, ok);
        CHECK(!ok);
        CHECK_THROWS_AS(weft::sleep_for(weft::with_timeout(weft::background(), 5ms), 1h),
                        std::system_error);
      },
      workers);
}

TEST_CASE("cancellation reaches a fiber blocked in read") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        const std::error_code ec = cancel_while_blocked([&](const weft::context& ctx) {
          std::error_code e;
          char buf[8];
          b.read(ctx, buf, e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
        // The conn is still usable.
        a.write("ok");
        CHECK(read_n(b, 2) == "ok");
      },
      workers);
}

TEST_CASE("a context deadline ends a blocked read with deadline_exceeded") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        char buf[8];
        std::error_code e;
        b.read(weft::with_timeout(weft::background(), 20ms), buf, e);
        CHECK(e == weft::errc::deadline_exceeded);
        CHECK_THROWS_AS(b.read_exactly(weft::with_timeout(weft::background(), 1ms), buf),
                        std::system_error);
      },
      workers);
}

TEST_CASE("cancellation reaches a fiber blocked in write") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        const std::string big(8 << 20, 'x');  // more than both socket buffers hold
        std::size_t sent = 0;
        const std::error_code ec = cancel_while_blocked([&](const weft::context& ctx) {
          std::error_code e;
          sent = b.write(ctx, big, e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
        CHECK(sent < big.size());
      },
      workers);
}

TEST_CASE("cancellation reaches a fiber blocked in accept") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        const std::error_code ec = cancel_while_blocked([&](const weft::context& ctx) {
          std::error_code e;
          ln.accept(ctx, e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
        // Still listening.
        conn c = weft::net::dial(ln.address());
        conn s = ln.accept(weft::with_cancel(weft::background()));
        CHECK(s.remote_address() == c.local_address());
      },
      workers);
}

TEST_CASE("cancellation reaches a fiber blocked in dial") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0", 0);
        const std::string addr = ln.address();
        // Fill the accept queue (nobody accepts): a later SYN is dropped, so
        // the next dial hangs.
        std::vector<conn> filler;
        for (int i = 0; i < 16; ++i) {
          std::error_code e;
          conn c = weft::net::dial(addr, 100ms, e);
          if (e) break;
          filler.push_back(std::move(c));
        }
        const std::error_code ec = cancel_while_blocked([&](const weft::context& ctx) {
          std::error_code e;
          weft::net::dial(ctx, addr, std::chrono::milliseconds(0), e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
      },
      workers);
}

TEST_CASE("cancellation reaches a fiber blocked in wait_readable") {
  net_runs(
      [](unsigned) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        const std::error_code ec = cancel_while_blocked([&](const weft::context& ctx) {
          std::error_code e;
          weft::net::wait_readable(ctx, fds[0], e);
          return e;
        });
        CHECK(ec == weft::errc::canceled);
        ::close(fds[0]);
        ::close(fds[1]);
      },
      {1, 2});
}

TEST_CASE("a cancel from a plain thread wakes a fiber, a plain thread's read is cancelled too") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        weft::context ctx = weft::with_cancel(weft::background());
        weft::chan<std::error_code> result(1);
        weft::go([&] {
          std::error_code e;
          char buf[8];
          b.read(ctx, buf, e);
          result.send(e);
        });
        test::await_parked(1);
        std::thread([&] { ctx.cancel(); }).join();
        CHECK(*result.recv() == weft::errc::canceled);

        weft::context ctx2 = weft::with_cancel(weft::background());
        std::atomic<bool> reading{false};
        std::error_code thread_ec;
        std::thread t([&] {
          char buf[8];
          reading.store(true);
          a.read(ctx2, buf, thread_ec);
        });
        while (!reading.load()) weft::yield();
        ctx2.cancel();
        weft::blocking([&] { t.join(); });
        CHECK(thread_ec == weft::errc::canceled);
      },
      {1, 2});
}

TEST_CASE("one cancel wakes many fibers blocked in different operations") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        const int n = static_cast<int>(test::scaled(200, 4));
        std::vector<conn> servers, clients;
        for (int i = 0; i < n; ++i) {
          auto [c, s] = connected_pair(ln);
          clients.push_back(std::move(c));
          servers.push_back(std::move(s));
        }
        weft::context root = weft::with_cancel(weft::background());
        weft::wait_group wg;
        std::atomic<int> canceled{0};
        wg.add(2 * n);
        for (int i = 0; i < n; ++i) {
          weft::go([&, i, ctx = weft::with_cancel(root)] {
            std::error_code e;
            char buf[8];
            servers[i].read(ctx, buf, e);
            if (e == weft::errc::canceled) canceled.fetch_add(1);
            wg.done();
          });
          weft::go([&, ctx = weft::with_timeout(root, std::chrono::hours(1))] {
            std::error_code e;
            weft::sleep_for(ctx, std::chrono::hours(1), e);
            if (e == weft::errc::canceled) canceled.fetch_add(1);
            wg.done();
          });
        }
        test::await_parked(2 * static_cast<std::uint64_t>(n));
        root.cancel();
        wg.wait();
        CHECK(canceled.load() == 2 * n);
      },
      workers);
}

TEST_SUITE_END();
