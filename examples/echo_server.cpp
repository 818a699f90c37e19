// echo_server: a TCP echo server, one fiber per connection.
//
//   echo_server [ADDRESS] [--reader]   (default 127.0.0.1:7000; WEFT_WORKERS=N)
//
// Prints "listening on ADDRESS" once ready; stops on SIGINT or SIGTERM
// (open connections are closed as their fibers are unwound) and exits 0.
// With --reader every read goes through a weft::net::reader, to measure
// what the buffering costs (tools/c10k.py's "weft-reader" row).

#include <csignal>
#include <cstdio>
#include <string_view>
#include <weft/weft.hpp>

namespace {

void serve(weft::net::conn c) {
  // Small enough that a connection's whole stack fits in one page: 10,000
  // idle connections then cost 10,000 pages, not 20,000.
  std::byte buf[1024];
  std::error_code ec;
  for (;;) {
    const std::size_t n = c.read(buf, ec);
    if (ec || n == 0) return;  // end of stream, or the client reset: drop it
    c.write(std::span<const std::byte>(buf, n), ec);
    if (ec) return;
  }
}

void serve_buffered(weft::net::conn c) {
  weft::net::reader in(c);
  std::byte buf[1024];
  std::error_code ec;
  for (;;) {
    const std::size_t n = in.read(buf, ec);
    if (ec || n == 0) return;
    c.write(std::span<const std::byte>(buf, n), ec);
    if (ec) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:7000";
  const bool buffered = argc > 2 && std::string_view(argv[2]) == "--reader";
  try {
    return weft::run([&] {
      weft::chan<int> signals = weft::signal::notify({SIGINT, SIGTERM});
      weft::net::listener ln = weft::net::listen(address);
      std::printf("listening on %s\n", ln.address().c_str());
      std::fflush(stdout);
      const weft::context accepting = weft::with_cancel(weft::background());
      weft::group acceptor;  // ln must outlive the fiber using it
      acceptor.go([&] {
        std::error_code ec;
        for (;;) {
          weft::net::conn c = ln.accept(accepting, ec);
          if (ec) return;
          weft::go(buffered ? serve_buffered : serve, std::move(c));
        }
      });
      signals.recv();
      accepting.cancel();
      acceptor.wait();
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
