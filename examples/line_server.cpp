// line_server: README.md's server example, built and run by the test suite.
#include <csignal>
#include <cstdio>
#include <string>
#include <weft/weft.hpp>
using namespace std::chrono_literals;

void serve(weft::net::conn c, const weft::context& open) {
  weft::net::reader in(c);  // lines of up to 64 KiB
  for (std::error_code ec;;) {
    std::string_view line = in.read_line(open, ec);  // waits; SIGTERM ends the wait
    if (ec) return;                                  // end of stream, reset, too long...
    weft::context request = weft::with_timeout(weft::background(), 2s);  // 2 s per answer
    c.write(request, std::to_string(line.size()) + "\n", ec);
    if (ec) return;
  }
}

int main(int argc, char** argv) {
  return weft::run([&] {
    weft::chan<int> stop = weft::signal::notify({SIGINT, SIGTERM});
    weft::net::listener ln = weft::net::listen(argc > 1 ? argv[1] : "127.0.0.1:7000");
    std::printf("listening on %s\n", ln.address().c_str());
    std::fflush(stdout);
    weft::context open = weft::with_cancel(weft::background());
    weft::group fibers;  // waits for every connection
    fibers.go([&] {
      for (std::error_code ec;;) {
        weft::net::conn c = ln.accept(open, ec);
        if (ec) return;  // SIGTERM: stop accepting
        fibers.go([&, c = std::move(c)]() mutable { serve(std::move(c), open); });
      }
    });
    stop.recv();    // SIGINT or SIGTERM
    open.cancel();  // no new connections or lines; answers in flight finish (2 s at most)
    fibers.wait();
  });
}
