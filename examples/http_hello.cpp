// http_hello: an HTTP/1.1 server that answers every request with a fixed
// "Hello, World!". One fiber per connection.
//
//   http_hello [ADDRESS] [IDLE_MS]   (default 127.0.0.1:7000, 60000 ms; WEFT_WORKERS=N)
//
// What it handles, and how:
//   * HTTP/1.1 and HTTP/1.0 requests, any method (HEAD gets no body), with
//     CRLF or bare-LF line endings; pipelined requests (answered in one
//     write); Content-Length bodies (read and dropped).
//   * Keep-alive: HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
//     "Connection: keep-alive", which the response then carries too.
//   * A request must arrive, head and body, within IDLE_MS of the end of
//     the previous one (or of the connection's start), else the connection
//     is closed: idle connections do not stay open forever.
//   * Malformed requests get 400 (bad request line, bad header line, no
//     Host in HTTP/1.1, bad Content-Length), an unknown HTTP version 505,
//     Transfer-Encoding 501, a header line over 8 KiB or a head over 64 KiB
//     431; then the connection is closed after the client has had time to
//     read the response (the input is drained, so the close sends no reset).
//   * SIGINT/SIGTERM: stop accepting, close idle connections, let requests
//     being read or answered finish (for up to 5 s), exit 0.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <weft/weft.hpp>

namespace {

using namespace std::chrono_literals;

constexpr std::size_t max_line = 8 * 1024;
constexpr std::size_t max_head = 64 * 1024;
constexpr std::size_t max_drain = 4 << 20;  // input discarded before closing after an error
std::chrono::milliseconds idle_timeout = 60s;

constexpr std::string_view hello_head =
    "HTTP/1.1 200 OK\r\n"
    "Server: weft\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n";
constexpr std::string_view hello_body = "Hello, World!";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c >= 127 ||
        std::string_view("()<>@,;:\\\"/[]?={}").find(ch) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// has_token: a comma-separated header value (Connection) contains `token`.
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = std::min(value.find(','), value.size());
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    value.remove_prefix(std::min(comma + 1, value.size()));
  }
  return false;
}

struct request {
  int status = 0;  // 0: fine; else the error to answer with
  bool http10 = false;
  bool head = false;  // a HEAD request: no body in the response
  bool keep_alive = false;
  std::size_t body = 0;
};

// read_head: read and check one request head. False when the connection
// ended or failed before a head was complete (ec says why; nothing to
// answer), or ctx ended.
bool read_head(weft::net::reader& in, const weft::context& ctx, request& r, std::error_code& ec) {
  std::size_t total = 0;
  std::string_view line;
  // The request line (a few empty lines before it are tolerated, RFC 9112 2.2).
  for (int empty = 0;; ++empty) {
    line = in.read_line(ctx, ec);
    if (ec == weft::errc::buffer_full) return r.status = 431, true;
    if (ec) return false;
    total += line.size() + 2;
    if (!line.empty()) break;
    if (empty == 4) return r.status = 400, true;
  }
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp1 == 0 || sp2 == sp1 + 1 ||
      line.find(' ', sp2 + 1) != std::string_view::npos || !is_token(line.substr(0, sp1))) {
    return r.status = 400, true;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(version[5]) ||
      version[6] != '.' || !std::isdigit(version[7])) {
    return r.status = 400, true;
  }
  if (version == "HTTP/1.0") {
    r.http10 = true;
  } else if (version != "HTTP/1.1") {
    return r.status = 505, true;
  }
  r.head = method == "HEAD";
  bool host = false, close = false, keep_alive = false, have_length = false;
  // Header fields up to the empty line.
  for (;;) {
    line = in.read_line(ctx, ec);
    if (ec == weft::errc::buffer_full) return r.status = 431, true;
    if (ec) return false;
    total += line.size() + 2;
    if (total > max_head) return r.status = 431, true;
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
      return r.status = 400, true;  // also obsolete line folding (a leading space)
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "host")) {
      if (host) return r.status = 400, true;
      host = true;
    } else if (iequals(name, "connection")) {
      close = close || has_token(value, "close");
      keep_alive = keep_alive || has_token(value, "keep-alive");
    } else if (iequals(name, "content-length")) {
      std::size_t n = 0;
      const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || err != std::errc() || end != value.data() + value.size() ||
          (have_length && n != r.body)) {
        return r.status = 400, true;
      }
      r.body = n;
      have_length = true;
    } else if (iequals(name, "transfer-encoding")) {
      r.status = 501;  // chunked bodies are not handled; finish reading the head first
    }
  }
  if (!r.http10 && !host) return r.status = 400, true;
  r.keep_alive = r.http10 ? keep_alive && !close : !close;
  return true;
}

// head_buffered: a whole request head is buffered (reading it will not wait).
bool head_buffered(weft::net::reader& in) {
  const std::string_view b = in.peek(in.buffered());
  return b.find("\n\n") != std::string_view::npos || b.find("\n\r\n") != std::string_view::npos;
}

// discard: read and drop `n` bytes.
void discard(weft::net::reader& in, const weft::context& ctx, std::size_t n, std::error_code& ec) {
  char scratch[1024];
  while (n != 0) {
    const std::size_t got = in.read(ctx, std::span(scratch, std::min(n, sizeof scratch)), ec);
    if (ec) return;
    if (got == 0) {
      ec = weft::errc::eof;
      return;
    }
    n -= got;
  }
}

// refuse: answer with an error status, then close without a reset: send
// our FIN and read (and drop) what the client still sends, for a while.
void refuse(weft::net::conn& c, weft::net::reader& in, weft::net::writer& out, int status) {
  const char* reason = status == 400   ? "Bad Request"
                       : status == 431 ? "Request Header Fields Too Large"
                       : status == 501 ? "Not Implemented"
                                       : "HTTP Version Not Supported";
  const std::string body = std::string(reason) + "\n";
  std::error_code ec;
  out.write("HTTP/1.1 " + std::to_string(status) + " " + reason +
                "\r\nServer: weft\r\nContent-Type: text/plain\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body,
            ec);
  out.flush(weft::with_timeout(weft::background(), 5s), ec);
  if (ec) return;
  c.shutdown_write(ec);
  c.set_read_deadline(std::chrono::steady_clock::now() + 2s, ec);
  char scratch[4096];
  for (std::size_t drained = 0; !ec && drained < max_drain;) {
    const std::size_t n = in.read(scratch, ec);
    if (n == 0) break;
    drained += n;
  }
}

// serve: one connection. `accepting` ends when shutdown begins (an idle
// connection closes then); `finishing` when the grace period ends. Each
// connection waits on contexts of its own, derived from those two, so
// that waiting does not touch state shared with other connections.
void serve(weft::net::conn c, const weft::context& accepting, const weft::context& finishing) {
  const weft::context idle = weft::with_cancel(accepting);
  const weft::context busy = weft::with_cancel(finishing);
  weft::net::reader in(c, max_line);
  weft::net::writer out(c);
  std::error_code ec;
  for (;;) {
    if (in.buffered() == 0) {
      // Idle between requests: flush the answers to the last batch, then
      // wait for the next request. It must arrive, head and body, within
      // idle_timeout (a conn deadline: one timer, no allocation).
      out.flush(busy, ec);
      if (ec) return;
      c.set_read_deadline(std::chrono::steady_clock::now() + idle_timeout, ec);
      in.peek(idle, 1, ec);
      if (ec) return;
    } else if (!head_buffered(in)) {
      // The next request is still arriving: answer the ones before it now.
      out.flush(busy, ec);
      if (ec) return;
    }
    request r;
    if (!read_head(in, busy, r, ec)) return;
    if (r.status != 0) return refuse(c, in, out, r.status);
    discard(in, busy, r.body, ec);
    if (ec) return;
    out.write(hello_head, ec);
    if (!r.keep_alive) {
      out.write("Connection: close\r\n", ec);
    } else if (r.http10) {
      out.write("Connection: keep-alive\r\n", ec);
    }
    out.write("\r\n", ec);
    if (!r.head) out.write(hello_body, ec);
    if (ec) return;
    if (!r.keep_alive) {
      out.flush(busy, ec);
      return;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:7000";
  if (argc > 2) idle_timeout = std::chrono::milliseconds(std::atoi(argv[2]));
  try {
    return weft::run([&] {
      weft::chan<int> signals = weft::signal::notify({SIGINT, SIGTERM});
      weft::net::listener ln = weft::net::listen(address);
      std::printf("listening on %s\n", ln.address().c_str());
      std::fflush(stdout);
      weft::context accepting = weft::with_cancel(weft::background());
      weft::context finishing = weft::with_cancel(weft::background());
      weft::group conns;
      conns.go([&] {
        std::error_code ec;
        for (;;) {
          weft::net::conn c = ln.accept(accepting, ec);
          if (ec) return;  // shutting down (or a listener failure)
          conns.go([&, c = std::move(c)]() mutable { serve(std::move(c), accepting, finishing); });
        }
      });
      signals.recv();
      accepting.cancel();
      weft::go([finishing] {
        weft::sleep_for(5s);
        finishing.cancel();
      });
      conns.wait();
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    return 1;
  }
}
