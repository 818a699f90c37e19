// bufio_test.cpp: weft::net::reader and weft::net::writer.

#include <sys/socket.h>

#include <string>
#include <vector>

#include "net_support.hpp"

TEST_SUITE_BEGIN("bufio");

using namespace nt;
using weft::net::reader;
using weft::net::writer;

namespace {

// trickle: write `s` one byte per write, from another fiber.
void trickle(conn& c, std::string s, weft::wait_group& wg) {
  wg.add(1);
  weft::go([&c, s = std::move(s), &wg] {
    for (char ch : s) c.write(std::string_view(&ch, 1));
    c.shutdown_write();
    wg.done();
  });
}

}  // namespace

TEST_CASE("read_line splits lines arriving a byte at a time, with either line ending") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        weft::wait_group wg;
        trickle(a, "one\r\ntwo\n\r\n\nlast without newline", wg);
        reader r(b);
        std::vector<std::string> lines;
        while (auto line = r.read_line()) lines.emplace_back(*line);
        CHECK(lines == std::vector<std::string>{"one", "two", "", "", "last without newline"});
        CHECK(!r.read_line());
        std::error_code ec;
        CHECK(r.read_line(ec).empty());
        CHECK(ec == weft::errc::eof);
        wg.wait();
      },
      {1, 2, 8});
}

TEST_CASE("the error_code form of read_until returns a final partial token with eof") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        a.write("x;y;tail");
        a.shutdown_write();
        reader r(b);
        std::error_code ec;
        CHECK(r.read_until(';', ec) == "x;");
        CHECK(!ec);
        CHECK(r.read_until(';', ec) == "y;");
        CHECK(r.read_until(';', ec) == "tail");
        CHECK(ec == weft::errc::eof);
        CHECK(r.read_until(';', ec).empty());
        CHECK(ec == weft::errc::eof);
      },
      {1});
}

TEST_CASE("a line longer than the limit fails with buffer_full and consumes nothing") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        const std::string fits(10'000 - 1, 'f');  // grows the buffer past 4 KiB
        const std::string too_long(20'000, 'L');
        weft::go([&, a = std::move(a)]() mutable {
          a.write(fits + "\n" + too_long + "\nafter\n");
          a.shutdown_write();
        });
        reader r(b, 16'384);
        std::error_code ec;
        CHECK(r.read_line(ec) == fits);
        CHECK(!ec);
        r.read_line(ec);
        CHECK(ec == weft::errc::buffer_full);
        CHECK(ec == std::errc::message_size);
        CHECK(r.buffered() == 16'384);  // nothing consumed
        CHECK_THROWS_AS(r.read_line(), std::system_error);
        // The caller may skip the rest itself.
        std::string skip(too_long.size() + 1, '\0');
        r.read_exactly(skip);
        CHECK(*r.read_line() == "after");
        CHECK(!r.read_line());
        CHECK_THROWS_AS(reader(b, 8), std::invalid_argument);
      },
      {1, 2});
}

TEST_CASE("peek returns the next bytes without consuming them, read and read_exactly drain") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        weft::wait_group wg;
        trickle(a, "*3\r\nabcdefghij", wg);
        reader r(b, 64);
        CHECK(r.peek(1) == "*");
        CHECK(r.peek(4) == "*3\r\n");
        r.consume(4);
        std::error_code ec;
        r.peek(65, ec);
        CHECK(ec == weft::errc::buffer_full);
        char two[2];
        CHECK(r.read(two) >= 1);
        CHECK(two[0] == 'a');
        std::string rest(8, '\0');
        r.read_exactly(std::span(rest).first(two[1] == 'b' ? 8 : 9));
        CHECK_THROWS_AS(r.peek(1), weft::net::unexpected_eof);
        CHECK(r.peek(1, ec).empty());
        CHECK(ec == weft::errc::eof);
        char buf[4];
        CHECK(r.read(buf) == 0);
        CHECK(r.read_exactly(buf, ec) == 0);
        CHECK(ec == weft::errc::eof);
        CHECK_THROWS_AS(r.consume(1), std::out_of_range);
        wg.wait();
      },
      {1, 2});
}

TEST_CASE("a context deadline interrupts read_line, the partial line stays for a retry") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        a.write("PART");
        reader r(b);
        std::error_code ec;
        r.read_line(weft::with_timeout(weft::background(), 20ms), ec);
        CHECK(ec == weft::errc::deadline_exceeded);
        CHECK(r.buffered() == 4);
        a.write("IAL\r\n");
        CHECK(*r.read_line(weft::with_timeout(weft::background(), 10s)) == "PARTIAL");
      },
      {1, 2, 8});
}

TEST_CASE("writer sends nothing until flush or a full buffer, and writes large data through") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        writer w(a, 16);
        w.write("hello ");
        w.write(std::string_view("world"));
        CHECK(w.buffered() == 11);
        std::error_code ec;
        char buf[64];
        b.set_read_deadline(clk::now() + 20ms);  // probes that nothing arrived
        b.read(buf, ec);
        CHECK(ec == std::errc::timed_out);
        b.set_read_deadline(clk::time_point::max());
        w.flush();
        CHECK(read_n(b, 11) == "hello world");
        w.write("abc");
        w.write("0123456789abcdefXYZ");  // overflows: the buffer's 16 go out, 6 stay
        CHECK(w.buffered() == 6);
        CHECK(read_n(b, 16) == "abc0123456789abc");
        const std::string big(100, 'B');
        w.write(big);  // tops the buffer up, flushes it, and writes the rest straight through
        CHECK(w.buffered() == 0);
        CHECK(read_n(b, 106) == "defXYZ" + big);
        w.flush(weft::with_cancel(weft::background()));
      },
      {1, 2});
}

TEST_CASE("a writer's error is sticky") {
  net_runs(
      [](unsigned) {
        listener ln = weft::net::listen("127.0.0.1:0");
        auto [a, b] = connected_pair(ln);
        const linger lg{1, 0};
        REQUIRE(::setsockopt(b.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
        b.close();  // the peer resets
        writer w(a, 64);
        std::error_code ec;
        const std::string chunk(1000, 'x');
        for (int i = 0; i < 1000 && !ec; ++i) w.write(chunk, ec);
        CHECK((ec == std::errc::connection_reset || ec == std::errc::broken_pipe));
        std::error_code again;
        w.flush(again);
        CHECK(again == ec);
        w.write("x", again);
        CHECK(again == ec);
        CHECK_THROWS_AS(w.flush(), std::system_error);
      },
      {1});
}

TEST_SUITE_END();
