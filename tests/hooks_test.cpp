// hooks_test.cpp: weft::hooks: libc's blocking calls, made from fibers, park
// the fiber; everywhere else they are libc's. This executable links the
// hooks, so every ::read below is the hook.
//
// "Parks the fiber, not the worker" is shown with one worker: a fiber that
// blocked its thread would keep the other fibers of the test from running,
// and the test would hang (ctest's timeout) instead of passing.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "net_support.hpp"

namespace {

using namespace std::chrono_literals;

struct sock_pair {
  int a = -1, b = -1;
  sock_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    a = sv[0];
    b = sv[1];
  }
  ~sock_pair() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
};

// wait_parked: until at least n fibers are parked on the netpoller (the
// reader below is inside its hooked call, parked, not blocking a thread).
void wait_parked(std::int64_t n) {
  while (weft::detail::netpoll_parked() < n) weft::yield();
}

// errno_now / clear_errno: errno of the thread running the fiber now. A
// fiber that parked may resume on another thread, and the compiler may
// keep &errno from before the call (README, "Fibers and threads").
[[gnu::noinline]] int errno_now() { return errno; }
[[gnu::noinline]] void clear_errno() { errno = 0; }

bool nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

// tcp_pair: a listener on 127.0.0.1 and its port.
int tcp_listener(int backlog, std::uint16_t& port) {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(l >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(l, backlog) == 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return l;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

}  // namespace

TEST_SUITE_BEGIN("hooks");

TEST_CASE("read on a blocking socket parks the fiber until another fiber writes") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        char buf[16] = {};
        ssize_t got = -2;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          got = ::read(p.a, buf, sizeof buf);
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(p.b, "hello", 5) == 5);
        wg.wait();
        CHECK(got == 5);
        CHECK(std::string(buf, 5) == "hello");
        CHECK_FALSE(nonblocking(p.a));  // the hooks never change the descriptor
      },
      {1, 2, 8});
}

TEST_CASE("recv, readv and recvmsg park too, MSG_WAITALL waits for every byte") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        std::atomic<int> done{0};
        std::string out[3];
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          char b[8];
          ssize_t n = ::recv(p.a, b, 6, MSG_WAITALL);  // arrives in two writes
          out[0].assign(b, n > 0 ? n : 0);
          iovec iov[2] = {{b, 2}, {b + 2, 2}};
          n = ::readv(p.a, iov, 2);
          out[1].assign(b, n > 0 ? n : 0);
          msghdr m{};
          iov[0] = {b, sizeof b};
          m.msg_iov = iov;
          m.msg_iovlen = 1;
          n = ::recvmsg(p.a, &m, 0);
          out[2].assign(b, n > 0 ? n : 0);
          done.store(1);
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(p.b, "abc", 3) == 3);
        REQUIRE(::write(p.b, "def", 3) == 3);
        wait_parked(1);
        REQUIRE(::write(p.b, "ghij", 4) == 4);
        wait_parked(1);
        REQUIRE(::send(p.b, "xyz", 3, 0) == 3);
        wg.wait();
        CHECK(out[0] == "abcdef");
        CHECK(out[1] == "ghij");
        CHECK(out[2] == "xyz");
      },
      {1, 2});
}

TEST_CASE("a blocking write larger than the socket buffer parks until it is all sent") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        int small = 4096;
        ::setsockopt(p.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        const std::string big(1 << 20, 'x');
        ssize_t wrote = -2;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          wrote = ::write(p.a, big.data(), big.size());
          wg.done();
        });
        wait_parked(1);
        std::size_t total = 0;
        std::vector<char> buf(65536);
        while (total < big.size()) {
          const ssize_t n = ::read(p.b, buf.data(), buf.size());
          REQUIRE(n > 0);
          total += static_cast<std::size_t>(n);
        }
        wg.wait();
        CHECK(wrote == static_cast<ssize_t>(big.size()));
        CHECK(total == big.size());
      },
      {1, 2});
}

TEST_CASE("the user's O_NONBLOCK (fcntl or FIONBIO) makes hooked calls return EAGAIN, unchanged") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        char c;
        REQUIRE(::fcntl(p.a, F_SETFL, ::fcntl(p.a, F_GETFL) | O_NONBLOCK) == 0);
        clear_errno();
        CHECK(::read(p.a, &c, 1) == -1);
        CHECK(errno_now() == EAGAIN);
        CHECK(::recv(p.a, &c, 1, 0) == -1);
        CHECK(nonblocking(p.a));
        int off = 0;
        REQUIRE(::ioctl(p.a, FIONBIO, &off) == 0);
        CHECK_FALSE(nonblocking(p.a));
        int on = 1;
        REQUIRE(::ioctl(p.b, FIONBIO, &on) == 0);
        pollfd pf{p.b, POLLIN, 0};
        CHECK(::poll(&pf, 1, 0) == 0);
        clear_errno();
        CHECK(::read(p.b, &c, 1) == -1);
        CHECK(errno_now() == EAGAIN);
        CHECK(nonblocking(p.b));
        // Back to blocking: the read parks again.
        weft::wait_group wg;
        wg.add(1);
        ssize_t got = -2;
        weft::go([&] {
          got = ::read(p.a, &c, 1);
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(p.b, "z", 1) == 1);
        wg.wait();
        CHECK(got == 1);
      },
      {1, 2});
}

namespace {

enum class outcome { returned, parked };

// read_outcome: a fiber reads a byte of `fd`. Either the read returns (r
// and e: its result and errno) or it parks on the netpoller; then a byte
// written to `peer` lets it finish.
outcome read_outcome(int fd, int peer, ssize_t& r, int& e) {
  std::atomic<bool> done{false};
  weft::wait_group wg;
  wg.add(1);
  weft::go([&] {
    char c;
    clear_errno();
    r = ::read(fd, &c, 1);
    e = errno_now();
    done.store(true);
    wg.done();
  });
  while (!done.load() && weft::detail::netpoll_parked() < 1) weft::yield();
  const outcome o = done.load() ? outcome::returned : outcome::parked;
  if (o == outcome::parked) REQUIRE(::write(peer, "x", 1) == 1);
  wg.wait();
  return o;
}

// expect_eagain / expect_parks: what a read of p.a does now.
void expect_eagain(sock_pair& p) {
  ssize_t r = 0;
  int e = 0;
  CHECK(read_outcome(p.a, p.b, r, e) == outcome::returned);
  CHECK(r == -1);
  CHECK(e == EAGAIN);
}

void expect_parks(sock_pair& p) {
  ssize_t r = 0;
  int e = 0;
  CHECK(read_outcome(p.a, p.b, r, e) == outcome::parked);
  CHECK(r == 1);
}

}  // namespace

// The hooks remember "blocking, no timeout" per descriptor, so a wait costs
// no fcntl and getsockopt; each change below, made through a dup (the flags
// and options belong to the open file), must reach the next call on p.a.
TEST_CASE("O_NONBLOCK and timeouts changed through any descriptor of the file reach hooked calls") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        expect_parks(p);  // learnt: blocking, no SO_RCVTIMEO
        const int d = ::dup(p.a);
        REQUIRE(d >= 0);
        REQUIRE(::fcntl(d, F_SETFL, ::fcntl(d, F_GETFL) | O_NONBLOCK) == 0);
        expect_eagain(p);
        REQUIRE(::fcntl64(d, F_SETFL, ::fcntl64(d, F_GETFL) & ~O_NONBLOCK) == 0);
        expect_parks(p);
        int on = 1;
        REQUIRE(::ioctl(d, FIONBIO, &on) == 0);
        expect_eagain(p);
        int off = 0;
        REQUIRE(::ioctl(d, FIONBIO, &off) == 0);
        expect_parks(p);
        // A timeout: the read must end with EAGAIN. Were the stale "no
        // timeout" used, it would wait for good: the guard ends it after
        // 10 s, and the check fails.
        timeval tv{0, 20'000};
        REQUIRE(::setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
        weft::chan<int> finished(1);
        std::atomic<bool> rescued{false};
        weft::wait_group guard;
        guard.add(1);
        weft::go([&] {
          weft::select(weft::recv_case(finished), weft::recv_case(weft::after(10s), [&](auto) {
                         rescued.store(true);
                         REQUIRE(::write(p.b, "x", 1) == 1);
                       }));
          guard.done();
        });
        char c;
        clear_errno();
        const ssize_t r = ::read(p.a, &c, 1);
        const int e = errno_now();
        finished.send(1);
        guard.wait();
        CHECK_FALSE(rescued.load());
        CHECK(r == -1);
        CHECK(e == EAGAIN);
        timeval none{0, 0};
        REQUIRE(::setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none) == 0);
        expect_parks(p);
        // The number p.a now names another file, non-blocking from its
        // creation (no fcntl to hear of): nothing learnt of the old one holds.
        int q[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, q) == 0);
        REQUIRE(::dup2(q[0], p.a) == p.a);
        ssize_t r2 = 0;
        int e2 = 0;
        CHECK(read_outcome(p.a, q[1], r2, e2) == outcome::returned);
        CHECK(e2 == EAGAIN);
        ::close(q[0]);
        ::close(q[1]);
        ::close(d);
      },
      {1, 2});
}

TEST_CASE("SO_RCVTIMEO and SO_SNDTIMEO end a parked call with EAGAIN, as the kernel's timeout") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        timeval tv{0, 50'000};
        REQUIRE(::setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
        std::atomic<bool> reading{true};
        std::atomic<int> ticks{0};
        weft::go([&] {  // runs only if the reader parks
          while (reading.load()) {
            ticks.fetch_add(1);
            weft::sleep_for(1ms);
          }
        });
        char c;
        clear_errno();
        const auto t0 = std::chrono::steady_clock::now();
        CHECK(::read(p.a, &c, 1) == -1);
        CHECK(errno_now() == EAGAIN);
        CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
        reading.store(false);
        CHECK(ticks.load() > 0);
        // Sends: fill the buffer, then a send that cannot proceed times out.
        REQUIRE(::setsockopt(p.a, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
        const std::string chunk(65536, 'y');
        ssize_t n = 0;
        do {
          n = ::send(p.a, chunk.data(), chunk.size(), 0);
        } while (n == static_cast<ssize_t>(chunk.size()));
        // A partial send returns the partial count; then nothing more fits.
        clear_errno();
        CHECK(::send(p.a, chunk.data(), chunk.size(), 0) == -1);
        CHECK(errno_now() == EAGAIN);
      },
      {1, 2});
}

TEST_CASE("close from another fiber wakes a parked read with EBADF") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        ssize_t got = -2;
        int err = 0;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          char c;
          got = ::read(p.a, &c, 1);
          err = errno_now();
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::close(p.a) == 0);
        p.a = -1;
        wg.wait();
        CHECK(got == -1);
        CHECK(err == EBADF);
      },
      {1, 2, 8});
}

TEST_CASE("dup2 over a descriptor a fiber waits on wakes it with EBADF, the new file works") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p, q;
        ssize_t got = -2;
        int err = 0;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          char c;
          got = ::read(p.a, &c, 1);
          err = errno_now();
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::dup2(q.a, p.a) == p.a);  // p.a now refers to q.a's socket
        wg.wait();
        CHECK(got == -1);
        CHECK(err == EBADF);
        // The number now reads q's socket, registered afresh.
        ssize_t again = -2;
        char c = 0;
        wg.add(1);
        weft::go([&] {
          again = ::read(p.a, &c, 1);
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(q.b, "q", 1) == 1);
        wg.wait();
        CHECK(again == 1);
        CHECK(c == 'q');
      },
      {1, 2});
}

TEST_CASE("connect waits for the handshake, SO_SNDTIMEO bounds it with EINPROGRESS") {
  nt::net_runs(
      [](unsigned) {
        std::uint16_t port = 0;
        const int l = tcp_listener(0, port);
        const sockaddr_in a = loopback(port);
        const int c1 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(::connect(c1, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
        CHECK_FALSE(nonblocking(c1));
        // The accept queue (backlog 0) now holds c1: further SYNs are
        // dropped, so a connect can only time out.
        const int c2 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval tv{0, 100'000};
        ::setsockopt(c2, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const int c3 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ::setsockopt(c3, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const int r2 = ::connect(c2, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        const int e2 = errno_now();
        const int r3 = ::connect(c3, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        const int e3 = errno_now();
        // One more may still fit (the kernel's queue check is off by one).
        CHECK((r2 == -1 || r3 == -1));
        CHECK(((r2 == -1 && e2 == EINPROGRESS) || (r3 == -1 && e3 == EINPROGRESS)));
        ::close(c1);
        ::close(c2);
        ::close(c3);
        // Refused: the kernel's errno.
        ::close(l);
        const int c4 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        clear_errno();
        CHECK(::connect(c4, reinterpret_cast<const sockaddr*>(&a), sizeof a) == -1);
        CHECK(errno_now() == ECONNREFUSED);
        ::close(c4);
      },
      {1, 2});
}

TEST_CASE("accept parks until a client connects") {
  nt::net_runs(
      [](unsigned) {
        std::uint16_t port = 0;
        const int l = tcp_listener(16, port);
        int accepted = -2;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          accepted = ::accept(l, nullptr, nullptr);
          wg.done();
        });
        wait_parked(1);
        const sockaddr_in a = loopback(port);
        const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
        wg.wait();
        CHECK(accepted >= 0);
        ::close(accepted);
        ::close(c);
        ::close(l);
      },
      {1, 2});
}

TEST_CASE("poll, ppoll and select park until a descriptor is ready or the timeout passes") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p, q;
        int polled = -2, ppolled = -2, selected = -2;
        short rev = 0;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          pollfd fds[2] = {{p.a, POLLIN, 0}, {q.a, POLLIN, 0}};
          polled = ::poll(fds, 2, -1);
          rev = fds[1].revents;
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(q.b, "x", 1) == 1);
        wg.wait();
        CHECK(polled == 1);
        CHECK((rev & POLLIN) != 0);

        wg.add(1);
        weft::go([&] {
          pollfd one{p.a, POLLIN, 0};
          ppolled = ::ppoll(&one, 1, nullptr, nullptr);
          fd_set rd;
          FD_ZERO(&rd);
          FD_SET(q.a, &rd);
          FD_SET(p.a, &rd);
          char c;
          (void)!::read(q.a, &c, 1);  // q.a drained: only p.a is readable
          selected = ::select(std::max(p.a, q.a) + 1, &rd, nullptr, nullptr, nullptr);
          if (!FD_ISSET(p.a, &rd) || FD_ISSET(q.a, &rd)) selected = -3;
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(p.b, "y", 1) == 1);
        wg.wait();
        CHECK(ppolled == 1);
        CHECK(selected == 1);

        // Timeouts: nothing arrives.
        char c;
        REQUIRE(::read(p.a, &c, 1) == 1);
        pollfd one{p.a, POLLIN, 0};
        CHECK(::poll(&one, 1, 20) == 0);
        timeval tv{0, 20'000};
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(p.a, &rd);
        CHECK(::select(p.a + 1, &rd, nullptr, nullptr, &tv) == 0);
        CHECK_FALSE(FD_ISSET(p.a, &rd));
        timespec ts{0, 20'000'000};
        CHECK(::ppoll(&one, 1, &ts, nullptr) == 0);
      },
      {1, 2, 8});
}

TEST_CASE("a pipe's read and write park, a regular file's calls are libc's") {
  nt::net_runs(
      [](unsigned) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        char buf[8] = {};
        ssize_t got = -2;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          got = ::read(fds[0], buf, sizeof buf);
          wg.done();
        });
        wait_parked(1);
        REQUIRE(::write(fds[1], "pipe", 4) == 4);
        wg.wait();
        CHECK(got == 4);
        ::close(fds[0]);
        ::close(fds[1]);

        char path[] = "/tmp/weft_hooks_XXXXXX";
        const int f = ::mkstemp(path);
        REQUIRE(f >= 0);
        ::unlink(path);
        CHECK(::write(f, "file", 4) == 4);
        CHECK(::lseek(f, 0, SEEK_SET) == 0);
        CHECK(::read(f, buf, sizeof buf) == 4);
        CHECK(::read(f, buf, sizeof buf) == 0);  // end of file, no wait
        ::close(f);
      },
      {1, 2});
}

TEST_CASE("sleeps park the fiber: other fibers run on the one worker meanwhile") {
  nt::net_runs(
      [](unsigned) {
        std::atomic<bool> sleeping{true};
        std::atomic<int> ran{0};
        weft::go([&] {
          while (sleeping.load()) {
            ran.fetch_add(1);
            weft::yield();
          }
        });
        int seen[5];
        timespec ts{0, 5'000'000};
        seen[0] = ran.load();
        CHECK(::nanosleep(&ts, nullptr) == 0);
        seen[1] = ran.load();
        CHECK(::usleep(5000) == 0);
        seen[2] = ran.load();
        CHECK(::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr) == 0);
        seen[3] = ran.load();
        timespec until;
        ::clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 5'000'000;
        if (until.tv_nsec >= 1'000'000'000) until.tv_nsec -= 1'000'000'000, ++until.tv_sec;
        CHECK(::clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, nullptr) == 0);
        seen[4] = ran.load();
        sleeping.store(false);
        for (int i = 1; i < 5; ++i) CHECK(seen[i] > seen[i - 1]);
        timespec bad{0, 1'000'000'000};
        clear_errno();
        CHECK(::nanosleep(&bad, nullptr) == -1);
        CHECK(errno_now() == EINVAL);
        CHECK(::clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, nullptr) == EINVAL);
        CHECK(::sleep(0) == 0);
      },
      {1});
}

TEST_CASE("plain threads and blocking() get libc's calls: they block their thread") {
  nt::net_runs(
      [](unsigned) {
        sock_pair p;
        // A plain thread blocks in read until a fiber writes.
        std::atomic<ssize_t> got{-2};
        std::thread t([&] {
          char c;
          got.store(::read(p.a, &c, 1));
        });
        // Inside blocking(): the fiber blocks its thread (sysmon hands its
        // queue on), it is not parked on the netpoller.
        sock_pair q;
        std::atomic<ssize_t> in_blocking{-2};
        std::atomic<bool> entered{false};
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          weft::blocking([&] {
            entered.store(true);
            char c;
            in_blocking.store(::read(q.a, &c, 1));
          });
          wg.done();
        });
        while (!entered.load()) weft::yield();
        CHECK(weft::detail::netpoll_parked() == 0);
        REQUIRE(::write(p.b, "t", 1) == 1);
        REQUIRE(::write(q.b, "b", 1) == 1);
        t.join();
        wg.wait();
        CHECK(got.load() == 1);
        CHECK(in_blocking.load() == 1);
      },
      {1, 2});
  // With no runtime at all, likewise.
  sock_pair p;
  CHECK(::write(p.b, "n", 1) == 1);
  char c;
  CHECK(::read(p.a, &c, 1) == 1);
}

TEST_CASE("getaddrinfo resolves names and numbers from a fiber") {
  nt::net_runs(
      [](unsigned) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        CHECK(::getaddrinfo("127.0.0.1", "80", &hints, &res) == 0);
        if (res != nullptr) ::freeaddrinfo(res);
        res = nullptr;
        CHECK(::getaddrinfo("localhost", "80", &hints, &res) == 0);
        if (res != nullptr) ::freeaddrinfo(res);
      },
      {1, 2});
}

TEST_SUITE_END();
