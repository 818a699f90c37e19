#pragma once
// signals.hpp: run a weft server until SIGINT or SIGTERM.
//
// The signals are blocked in every thread (the mask is set before
// weft::run starts its threads, which inherit it) and read from a
// signalfd, which the main fiber waits on like any socket. No signal
// handler runs, so there is nothing async-signal-unsafe to get wrong.

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <system_error>
#include <weft/net.hpp>

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

}  // namespace example
