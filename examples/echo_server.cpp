// echo_server: a TCP echo server, one fiber per connection.
//
//   echo_server [ADDRESS]     (default 127.0.0.1:7000; WEFT_WORKERS=N)
//
// Prints "listening on ADDRESS" once ready; stops cleanly on SIGINT or
// SIGTERM (open connections are closed by their fibers' unwinding).

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
  return example::serve_until_stopped("echo_server", argc, argv, serve);
}
