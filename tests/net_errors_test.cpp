// net_errors_test.cpp: the std::error_code forms of weft::net, and servers
// that survive peers which reset.

#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "net_support.hpp"

TEST_SUITE_BEGIN("net_errors");

using namespace nt;

namespace {

// reset: close `c` so that the peer gets a RST, not a FIN.
void reset(conn& c) {
  const linger lg{1, 0};
  REQUIRE(::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
  c.close();
}

bool is_reset(const std::error_code& ec) {
  return ec == std::errc::connection_reset || ec == std::errc::broken_pipe;
}

// echo_ec: an echo loop written only with error codes, no try/catch: a
// single exception would terminate the test program.
void echo_ec(conn c, weft::chan<std::error_code> errors) {
  std::byte buf[4096];
  std::error_code ec;
  for (;;) {
    const std::size_t n = c.read(buf, ec);
    if (ec || n == 0) break;
    c.write(std::span<const std::byte>(buf, n), ec);
    if (ec) break;
  }
  errors.send(ec);
}

}  // namespace

TEST_CASE("error_code forms report a reset peer on read and write without throwing") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    auto [a, b] = connected_pair(ln);
    a.write("hello");
    reset(a);
    std::error_code ec;
    char buf[16];
    // The data sent before the reset may or may not be delivered first.
    std::size_t n = b.read(buf, ec);
    if (!ec && n != 0) n = b.read(buf, ec);
    CHECK(is_reset(ec));
    CHECK(n == 0);
    std::size_t sent = 0;
    for (int i = 0; i < 100 && !ec; ++i) sent = b.write(std::string(65536, 'x'), ec);
    CHECK(is_reset(ec));
    CHECK(sent < 65536);
    std::string peer = b.remote_address(ec);
    CHECK((ec == std::errc::not_connected || (!ec && !peer.empty())));
  });
}

TEST_CASE("error_code forms report closed objects, refused dials and bad addresses") {
  net_runs(
      [](unsigned) {
        std::error_code ec;
        listener ln = weft::net::listen("127.0.0.1:0", ec);
        REQUIRE(!ec);
        const std::uint16_t port = ln.port();
        auto [a, b] = connected_pair(ln);
        a.close(ec);
        CHECK(!ec);
        a.close(ec);
        CHECK(ec == std::errc::operation_canceled);
        char buf[4];
        CHECK(a.read(buf, ec) == 0);
        CHECK(ec == std::errc::operation_canceled);
        a.write("x", ec);
        CHECK(ec == std::errc::operation_canceled);
        a.set_deadline(clk::now(), ec);
        CHECK(ec == std::errc::operation_canceled);
        a.shutdown_write(ec);
        CHECK(ec == std::errc::operation_canceled);
        // b's peer is gone: end of stream, then read_exactly's eof.
        CHECK(b.read(buf, ec) == 0);
        CHECK(!ec);
        CHECK(b.read_exactly(buf, ec) == 0);
        CHECK(ec == weft::errc::eof);
        ln.close(ec);
        CHECK(!ec);
        conn c = ln.accept(ec);
        CHECK(ec == std::errc::operation_canceled);
        c = weft::net::dial("127.0.0.1:" + std::to_string(port), ec);
        CHECK(ec == std::errc::connection_refused);
        c = weft::net::dial("127.0.0.1:99999", ec);
        CHECK(ec == std::errc::invalid_argument);
        listener l2 = weft::net::listen("not an address", ec);
        CHECK(ec == std::errc::invalid_argument);
        weft::net::wait_readable(-1, clk::time_point::max(), ec);
        CHECK(ec == std::errc::bad_file_descriptor);
      },
      {1, 2});
}

TEST_CASE("read_exactly's error_code form returns the bytes read before the end of the stream") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        a.write("abc");
        a.shutdown_write();
        std::string buf(8, '\0');
        std::error_code ec;
        CHECK(b.read_exactly(buf, ec) == 3);
        CHECK(ec == weft::errc::eof);
        CHECK(buf.substr(0, 3) == "abc");
        CHECK_THROWS_AS(b.read_exactly(buf), weft::net::unexpected_eof);
      },
      {1, 2});
}

TEST_CASE("a deadline is reported as timed_out by the error_code forms") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        b.set_read_deadline(clk::now() + 20ms);
        std::error_code ec;
        char buf[4];
        CHECK(b.read(buf, ec) == 0);
        CHECK(ec == std::errc::timed_out);
      },
      {1, 2});
}

TEST_CASE("a server keeps serving while peers are killed mid-read and mid-write") {
  net_runs([](unsigned) {
    listener ln = weft::net::listen("127.0.0.1:0");
    const std::string addr = ln.address();
    weft::chan<std::error_code> errors(16);
    weft::go([&] {
      std::error_code ec;
      for (;;) {
        conn c = ln.accept(ec);
        if (ec) return;
        weft::go(echo_ec, std::move(c), errors);
      }
    });
    // Mid-read: the server reads what was sent and waits for more.
    {
      conn c = weft::net::dial(addr);
      c.write("partial");
      CHECK(read_n(c, 7) == "partial");
      reset(c);
      const std::error_code ec = *errors.recv();
      CHECK((is_reset(ec) || !ec));  // a RST after the data was read: reset (or EOF)
    }
    // Mid-write: the client sends a lot and reads nothing, so the server's
    // echo blocks in write until the client resets.
    {
      conn c = weft::net::dial(addr);
      const std::string chunk(1 << 16, 'w');
      std::error_code ec;
      // Send until our own buffer fills too (the server's write is blocked).
      c.set_write_deadline(clk::now() + 200ms);
      for (int i = 0; i < 1000 && !ec; ++i) c.write(chunk, ec);
      CHECK(ec == std::errc::timed_out);
      reset(c);
      CHECK(is_reset(*errors.recv()));
    }
    // Still serving.
    for (int i = 0; i < 3; ++i) {
      conn c = weft::net::dial(addr);
      c.write("still here");
      CHECK(read_n(c, 10) == "still here");
    }
    ln.close();
  });
}

TEST_CASE("string, string_view and char-buffer overloads read and write") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        const std::string s = "from a string";
        a.write(s);
        a.write(std::string_view(" and a view"));
        a.write(", a literal");
        std::string got(s.size() + 11 + 11, '\0');
        b.read_exactly(got);
        CHECK(got == "from a string and a view, a literal");
        char buf[64];
        a.write(std::string_view("xyz"));
        const std::size_t n = b.read(buf);
        CHECK(std::string_view(buf, n) == "xyz");
        std::vector<char> v(3);
        a.write("123");
        b.read_exactly(v);
        CHECK(std::string_view(v.data(), 3) == "123");
      },
      {1});
}

TEST_SUITE_END();
