// threads-echo: one std::thread per connection, blocking sockets: the model
// fibers exist to replace (perf/README-c10k.md).
//
//   threads-echo [ADDR] [--stack KIB]     ADDR default 127.0.0.1:7000, stack default 64 KiB
//
// Design
//   An acceptor thread accepts (blocking) and starts a thread per connection
//   that reads into a 4 KiB stack buffer and writes back until end of stream.
//   std::thread cannot take a stack size, so the process default is set with
//   pthread_setattr_default_np: 64 KiB (plus a guard page) lets 10,000 threads
//   fit in well under the 65,530-mapping limit and in little memory; the pages
//   a thread never touches are never resident.
//   Shutdown (SIGINT/SIGTERM, taken by sigwait in main): shut down the
//   listener and every connection so each blocked thread returns, wait for the
//   connection threads to finish, exit 0.
#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "../common/listen.hpp"

namespace {

struct registry {
  std::mutex mu;
  std::condition_variable idle;
  std::unordered_set<int> open;  // guarded by mu: connections whose thread is running
  bool stopping = false;         // guarded by mu
};

void serve(registry& reg, int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || !peers::write_all(fd, buf, std::size_t(n))) break;
  }
  std::lock_guard lock(reg.mu);
  ::close(fd);
  reg.open.erase(fd);
  if (reg.open.empty()) reg.idle.notify_all();
}

void accept_loop(registry& reg, int lfd) {
  bool warned = false;
  for (;;) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::lock_guard lock(reg.mu);
      if (reg.stopping) return;
      std::perror("threads-echo: accept4");
      continue;
    }
    std::lock_guard lock(reg.mu);
    if (reg.stopping) {
      ::close(fd);
      return;
    }
    reg.open.insert(fd);  // before the thread exists: its erase needs mu, which we hold
    try {
      std::thread(serve, std::ref(reg), fd).detach();
    } catch (const std::system_error& e) {
      reg.open.erase(fd);
      if (!warned) std::fprintf(stderr, "threads-echo: cannot start a thread: %s\n", e.what());
      warned = true;
      ::close(fd);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7000";
  std::size_t stack_kib = 64;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--stack" && i + 1 < argc)
      stack_kib = std::size_t(std::atol(argv[++i]));
    else if (a[0] == '-')
      return std::fprintf(stderr, "usage: threads-echo [ADDR] [--stack KIB]\n"), 2;
    else
      addr = a;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_kib * 1024);
  if (int rc = pthread_setattr_default_np(&attr); rc != 0) {
    std::fprintf(stderr, "threads-echo: stack size %zu KiB: %s\n", stack_kib, std::strerror(rc));
    return 1;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);  // inherited by every thread
  int lfd;
  try {
    lfd = peers::listen_on(addr, false);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "threads-echo: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "threads-echo: listening on %s, %zu KiB stacks\n",
               peers::bound_address(lfd).c_str(), stack_kib);
  registry reg;
  std::thread acceptor(accept_loop, std::ref(reg), lfd);
  int sig = 0;
  sigwait(&sigs, &sig);
  std::unique_lock lock(reg.mu);
  reg.stopping = true;
  ::shutdown(lfd, SHUT_RDWR);  // accept() returns EINVAL
  for (int fd : reg.open) ::shutdown(fd, SHUT_RDWR);
  reg.idle.wait(lock, [&] { return reg.open.empty(); });
  lock.unlock();
  acceptor.join();
  ::close(lfd);
  return 0;
}
