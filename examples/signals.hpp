#pragma once
// signals.hpp: run a weft server until SIGINT or SIGTERM (main() of both
// example servers is serve_until_stopped).
//
// The signals are blocked in every thread (the mask is set before
// weft::run starts its threads, which inherit it) and read from a
// signalfd, which the main fiber waits on like any socket. No signal
// handler runs, so there is nothing async-signal-unsafe to get wrong.

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <system_error>
#include <weft/weft.hpp>

namespace example {

// block_stop_signals: call in main() before weft::run.
inline sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    throw std::system_error(errno, std::generic_category(), "pthread_sigmask");
  }
  return set;
}

// wait_for_stop_signal: park the calling fiber until SIGINT or SIGTERM.
inline int wait_for_stop_signal(const sigset_t& set) {
  const int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  signalfd_siginfo info{};
  for (;;) {
    weft::net::wait_readable(fd);
    if (::read(fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) break;
  }
  ::close(fd);
  return static_cast<int>(info.ssi_signo);
}

// serve_until_stopped: listen on argv[1] (default 127.0.0.1:7000), print
// "listening on ADDRESS", run serve(conn) in a fiber per connection, and on
// SIGINT or SIGTERM close the listener and return 0 (fibers still serving
// are unwound by weft::run, which closes their connections).
inline int serve_until_stopped(const char* program, int argc, char** argv,
                               void (*serve)(weft::net::conn)) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:7000";
  try {
    const sigset_t stop = block_stop_signals();
    return weft::run([&] {
      weft::net::listener ln = weft::net::listen(address);
      std::printf("listening on %s\n", ln.address().c_str());
      std::fflush(stdout);
      weft::wait_group acceptor;  // ln must outlive the fiber using it
      acceptor.add(1);
      weft::go([&ln, &acceptor, serve] {
        try {
          for (;;) weft::go(serve, ln.accept());
        } catch (const std::system_error&) {
          // The listener was closed: shutting down.
        }
        acceptor.done();
      });
      wait_for_stop_signal(stop);
      ln.close();
      acceptor.wait();
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace example
