// fork_test.cpp: fork while a runtime runs. A child forked from a running
// runtime cannot use it (it has one thread, and the epoll set is the
// parent's); it must fail clearly and leave the parent's wake-ups alone.
// fork+exec keeps working.
//
// Children only make weft calls, write to a pipe and _exit: no doctest
// assertions (the framework's state is the parent's, and its SIGABRT
// handler is reset), and no threads: TSan refuses to start a thread in a
// child forked while other threads were alive (die_after_fork), which is
// also why the child that runs its own runtime is forked between runs,
// with every thread of the previous run joined. ASan and TSan otherwise
// follow fork (their own locks are taken around it).

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

extern char** environ;

TEST_SUITE_BEGIN("fork");

namespace {

using namespace std::chrono_literals;

constexpr const char* forked_message = "the runtime cannot be used in a forked child";

struct child_result {
  int status = 0;   // as from waitpid
  std::string err;  // everything the child wrote to stderr
};

// fork_child: fork; the child runs `body` with stderr going to a pipe and
// _exits with its result (a SIGALRM ends a child that hangs). The parent
// waits for it inside weft::blocking when called from a fiber.
child_result fork_child(const std::function<int()>& body) {
  int err[2];
  REQUIRE(::pipe(err) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(err[0]);
    ::dup2(err[1], 2);
    ::signal(SIGABRT, SIG_DFL);  // not the test framework's crash report
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);  // an abort here is an expected outcome
    ::alarm(10);
    ::_exit(body());
  }
  ::close(err[1]);
  child_result r;
  weft::blocking([&] {
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(err[0], buf, sizeof buf);
      if (n <= 0) break;
      r.err.append(buf, static_cast<std::size_t>(n));
    }
    ::waitpid(pid, &r.status, 0);
  });
  ::close(err[0]);
  return r;
}

// expect_refused: call f in the child; 0 if it threw std::logic_error
// carrying the forked-child message, else a distinct code.
int expect_refused(const std::function<void()>& f, int code) {
  try {
    f();
  } catch (const std::logic_error& e) {
    return std::string(e.what()).find(forked_message) != std::string::npos ? 0 : code;
  } catch (...) {
    return code + 1;
  }
  return code + 2;
}

}  // namespace

TEST_CASE("a child forked while the runtime runs cannot use it, and the parent's wake-ups stay") {
  test::for_each_workers(
      [](unsigned) {
        constexpr int n = 16;
        auto ln = weft::net::listen("127.0.0.1:0");
        const std::string addr = "127.0.0.1:" + std::to_string(ln.port());
        std::vector<weft::net::conn> cli, srv;
        for (int i = 0; i < n; ++i) {
          cli.push_back(weft::net::dial(addr));
          srv.push_back(ln.accept());
        }
        weft::net::conn quiet_cli = weft::net::dial(addr);
        weft::net::conn quiet = ln.accept();  // nobody writes to it
        std::atomic<int> woke{0}, timed_out{0};
        weft::wait_group wg;
        wg.add(n);
        for (int i = 0; i < n; ++i) {
          weft::go([&, i] {
            std::byte b[1];
            srv[static_cast<std::size_t>(i)].set_read_deadline(std::chrono::steady_clock::now() +
                                                               30s);
            try {
              srv[static_cast<std::size_t>(i)].read(b);
              woke.fetch_add(1);
            } catch (const std::system_error&) {
              timed_out.fetch_add(1);  // its readiness edge went to the child
            }
            wg.done();
          });
        }
        while (weft::stats().fibers_parked < static_cast<std::uint64_t>(n)) weft::yield();
        // The readers are parked on the shared epoll set. The child tries
        // what would have it poll that set (a sleep, a descriptor wait),
        // and more; the parent makes every reader's descriptor ready while
        // it runs.
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        std::thread writer([&] {
          char c;
          (void)!::read(ready[0], &c, 1);
          for (auto& client : cli) (void)!::write(client.fd(), "x", 1);
        });
        const child_result child = fork_child([&] {
          (void)!::write(ready[1], "g", 1);
          int rc = expect_refused([] { weft::sleep_for(5s); }, 10);  // long: it must park
          if (rc == 0) {
            rc = expect_refused(
                [&] {
                  std::byte b[1];
                  quiet.read(b);
                },
                20);
          }
          if (rc == 0) rc = expect_refused([] { weft::go([] {}); }, 30);
          if (rc == 0) rc = expect_refused([] { weft::run([] {}); }, 40);
          if (rc == 0 && weft::stats().workers != 0) rc = 50;  // no runtime to report on
          return rc;
        });
        writer.join();
        ::close(ready[0]);
        ::close(ready[1]);
        CHECK_MESSAGE(WIFEXITED(child.status), child.err);
        CHECK(WEXITSTATUS(child.status) == 0);
        wg.wait();
        CHECK(woke.load() == n);
        CHECK(timed_out.load() == 0);
        quiet_cli.close();
        quiet.close();
        ln.close();
        for (auto& c : cli) c.close();
        for (auto& c : srv) c.close();
      },
      {1, 2, 8});
}

TEST_CASE("a fiber in a forked child that needs the scheduler aborts with a clear message") {
  struct use {
    const char* what;
    int (*call)();
  };
  const use uses[] = {
      {"yield",
       [] {
         weft::yield();
         return 1;
       }},
      {"a receive that parks",
       [] {
         weft::chan<int> c;
         (void)c.recv();
         return 1;
       }},
  };
  for (const use& u : uses) {
    CAPTURE(std::string(u.what));
    weft::options o;
    o.workers = 2;
    child_result child;
    weft::run([&] { child = fork_child(u.call); }, o);
    CHECK(WIFSIGNALED(child.status));
    CHECK(WTERMSIG(child.status) == SIGABRT);
    CHECK(child.err.find(std::string("weft: ") + forked_message) != std::string::npos);
  }
}

TEST_CASE("a plain thread's child forked during a run cannot use the runtime either") {
  weft::options o;
  o.workers = 2;
  int status = -1;
  weft::run(
      [&] {
        weft::chan<int> c;
        weft::go([c] { (void)c.recv(); });  // parked in the parent, copied into the child
        while (weft::stats().fibers_parked < 1) weft::yield();
        weft::blocking([&] {
          std::thread t([&] {
            const pid_t pid = ::fork();
            if (pid == 0) {
              int rc = expect_refused([] { weft::go([] {}); }, 10);
              if (rc == 0) rc = expect_refused([] { weft::run([] {}); }, 20);
              ::_exit(rc);
            }
            ::waitpid(pid, &status, 0);
          });
          t.join();
        });
        c.close();
      },
      o);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("fork and exec, posix_spawn and system from fibers keep working") {
  test::for_each_workers(
      [](unsigned) {
        weft::wait_group wg;
        std::atomic<int> ok{0};
        wg.add(3);
        weft::go([&] {
          const int st = weft::blocking([] { return std::system("exit 3"); });
          if (WIFEXITED(st) && WEXITSTATUS(st) == 3) ok.fetch_add(1);
          wg.done();
        });
        weft::go([&] {
          const pid_t pid = ::fork();
          if (pid == 0) {
            ::execl("/bin/sh", "sh", "-c", "exit 4", static_cast<char*>(nullptr));
            ::_exit(127);
          }
          int st = 0;
          weft::blocking([&] { ::waitpid(pid, &st, 0); });
          if (WIFEXITED(st) && WEXITSTATUS(st) == 4) ok.fetch_add(1);
          wg.done();
        });
        weft::go([&] {
          pid_t pid = 0;
          char sh[] = "sh", flag[] = "-c", cmd[] = "exit 5";
          char* argv[] = {sh, flag, cmd, nullptr};
          if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ) == 0) {
            int st = 0;
            weft::blocking([&] { ::waitpid(pid, &st, 0); });
            if (WIFEXITED(st) && WEXITSTATUS(st) == 5) ok.fetch_add(1);
          }
          wg.done();
        });
        wg.wait();
        CHECK(ok.load() == 3);
        // The parent's runtime is untouched: fibers still start and talk.
        weft::chan<int> c;
        weft::go([c] { c.send(9); });
        CHECK(c.recv() == 9);
      },
      {1, 2, 8});
}

TEST_CASE("a child forked between runs may run its own") {
  weft::options o;
  o.workers = 2;
  CHECK(weft::run([] { return 1; }, o) == 1);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    weft::options co;
    co.workers = 2;
    int rc = 1;
    try {
      rc = weft::run([] { return 7; }, co);
    } catch (...) {
    }
    ::_exit(rc);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 7);
}

TEST_SUITE_END();
