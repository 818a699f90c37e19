// echo_server: a TCP echo server, one fiber per connection.
//
//   echo_server [ADDRESS]     (default 127.0.0.1:7000; WEFT_WORKERS=N)
//
// Prints "listening on ADDRESS" once ready; stops cleanly on SIGINT or
// SIGTERM (open connections are closed by their fibers' unwinding).

#include <cstdio>
#include <exception>
#include <weft/weft.hpp>

#include "signals.hpp"

namespace {

void serve(weft::net::conn c) {
  // Small enough that a connection's whole stack fits in one page: 10,000
  // idle connections then cost 10,000 pages, not 20,000.
  std::byte buf[1024];
  try {
    for (;;) {
      const std::size_t n = c.read(buf);
      if (n == 0) return;
      c.write(std::span<const std::byte>(buf, n));
    }
  } catch (const std::system_error&) {
    // The client reset the connection or went away mid-write: drop it.
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:7000";
  try {
    const sigset_t stop = example::block_stop_signals();
    return weft::run([&] {
      weft::net::listener ln = weft::net::listen(address);
      std::printf("listening on %s\n", ln.address().c_str());
      std::fflush(stdout);
      weft::go([&ln] {
        try {
          for (;;) weft::go(serve, ln.accept());
        } catch (const std::system_error&) {
          // The listener was closed: shutting down.
        }
      });
      example::wait_for_stop_signal(stop);
      ln.close();
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
