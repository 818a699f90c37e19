// net_stress_test.cpp: descriptor churn and descriptor exhaustion.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "net_support.hpp"
#include "weft/detail/introspect.hpp"

using namespace nt;

TEST_SUITE_BEGIN("stress");

TEST_CASE("stress: fibers close and reopen sockets while others wait on them") {
  const int churners = static_cast<int>(test::scaled(16, 4));
  const int iterations = static_cast<int>(test::scaled(400));
  net_runs([&](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    echo_service server(ln);
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
    server.stop();
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

TEST_SUITE_END();

TEST_SUITE_BEGIN("net");

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
            // Every runtime thread must be inside its own code before the
            // descriptors run out: a thread starting with none left trips
            // UBSan's vptr check, which needs a pipe (runtime/os_thread.hpp).
            while (!weft::detail::runtime_threads_entered()) weft::sleep_for(1ms);
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

TEST_SUITE_END();
