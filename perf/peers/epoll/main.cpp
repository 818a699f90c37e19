// epoll-echo: the floor for the C10K comparison (perf/README-c10k.md).
//
//   epoll-echo [ADDR] [--threads N]     ADDR default 127.0.0.1:7000, N default: one per core
//
// Design
//   One thread per core, each with its own SO_REUSEPORT listener and its own
//   epoll set, so the kernel spreads connections and no state is shared. Every
//   descriptor is registered once, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, and
//   never re-armed (as weft's netpoller does). A connection has no user-space
//   state at all: the read buffer is the thread's; a read shorter than the
//   buffer means the socket is drained (new bytes raise a new edge), so an echo
//   costs one read and one write plus a share of epoll_wait. Only a write the
//   socket cannot take whole parks the remainder in `blocked` and stops reading
//   that connection until EPOLLOUT (backpressure), which never happens in a
//   64-byte ping-pong. This is the least a runtime can do per message.
//   Runs until SIGINT or SIGTERM, then exits 0.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../common/listen.hpp"

namespace {

constexpr std::size_t kBuffer = 64 * 1024;

class echo_thread {
 public:
  echo_thread(int listen_fd, int stop_fd) : lfd_(listen_fd) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    add(lfd_, EPOLLIN | EPOLLET);
    add(stop_fd, EPOLLIN);  // level-triggered and never read: wakes every thread for good
    stop_fd_ = stop_fd;
  }
  ~echo_thread() {
    for (std::size_t fd = 0; fd < open_.size(); ++fd)
      if (open_[fd]) ::close(int(fd));
    ::close(lfd_);
    ::close(ep_);
  }

  void run() {
    std::vector<epoll_event> evs(1024);
    for (;;) {
      int n = epoll_wait(ep_, evs.data(), int(evs.size()), -1);
      for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == stop_fd_) return;
        if (fd == lfd_)
          accept_all();
        else
          on_conn(fd, evs[i].events);
      }
    }
  }

 private:
  void add(int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        if (std::size_t(fd) >= open_.size()) open_.resize(std::size_t(fd) * 2 + 1);
        open_[std::size_t(fd)] = 1;  // only for closing at exit
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) std::perror("epoll-echo: accept4");
      return;
    }
  }

  void on_conn(int fd, std::uint32_t events) {
    auto it = blocked_.find(fd);
    if (it != blocked_.end()) {
      if (!(events & EPOLLOUT)) return;
      std::string& rest = it->second;
      ssize_t w = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) return finish(fd);
      if (w > 0) rest.erase(0, std::size_t(w));
      if (!rest.empty()) return;
      blocked_.erase(it);  // fall through: bytes that came meanwhile raised no new edge
    }
    for (;;) {
      ssize_t n = ::read(fd, buf_, kBuffer);
      if (n > 0) {
        if (!echo(fd, n)) return;
        if (std::size_t(n) < kBuffer) return;  // drained
        continue;
      }
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0 && errno == EINTR) continue;
      return finish(fd);  // end of stream or error
    }
  }

  // echo: false if the connection is gone or blocked.
  bool echo(int fd, ssize_t n) {
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = ::send(fd, buf_ + off, std::size_t(n - off), MSG_NOSIGNAL);
      if (w > 0) {
        off += w;
      } else if (w < 0 && errno == EAGAIN) {
        blocked_[fd].assign(buf_ + off, std::size_t(n - off));
        return false;
      } else if (!(w < 0 && errno == EINTR)) {
        finish(fd);
        return false;
      }
    }
    return true;
  }

  void finish(int fd) {
    blocked_.erase(fd);
    ::close(fd);  // leaves the epoll set too
    open_[std::size_t(fd)] = 0;
  }

  int ep_ = -1;
  int lfd_;
  int stop_fd_ = -1;
  char buf_[kBuffer];
  std::vector<char> open_;  // indexed by descriptor: the connections this thread accepted
  std::unordered_map<int, std::string> blocked_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:7000";
  unsigned threads = std::thread::hardware_concurrency();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = unsigned(std::atoi(argv[++i]));
    else if (a[0] == '-')
      return std::fprintf(stderr, "usage: epoll-echo [ADDR] [--threads N]\n"), 2;
    else
      addr = a;
  }
  if (threads == 0) threads = 1;
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);  // inherited: only sigwait below sees them
  int stop_fd = eventfd(0, EFD_CLOEXEC);
  std::vector<std::unique_ptr<echo_thread>> loops;
  try {
    int first = peers::listen_on(addr, true, SOCK_NONBLOCK);
    addr = peers::bound_address(first);  // a port-0 address is now concrete for the others
    loops.push_back(std::make_unique<echo_thread>(first, stop_fd));
    for (unsigned i = 1; i < threads; ++i)
      loops.push_back(
          std::make_unique<echo_thread>(peers::listen_on(addr, true, SOCK_NONBLOCK), stop_fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "epoll-echo: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "epoll-echo: listening on %s, %u threads\n", addr.c_str(), threads);
  std::vector<std::thread> ts;
  for (auto& l : loops) ts.emplace_back([p = l.get()] { p->run(); });
  int sig = 0;
  sigwait(&sigs, &sig);
  std::uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(stop_fd, &one, sizeof one);
  for (auto& t : ts) t.join();
  loops.clear();
  ::close(stop_fd);
  return 0;
}
