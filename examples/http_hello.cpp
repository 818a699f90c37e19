// http_hello: an HTTP/1.1 server that answers every request with a fixed
// "Hello, World!", keeping connections alive. One fiber per connection.
//
//   http_hello [ADDRESS]      (default 127.0.0.1:7000; WEFT_WORKERS=N)
//
// It parses just enough HTTP for load generators such as wrk: the request
// head up to the blank line, Content-Length bodies (skipped), pipelined
// requests (answered in one write), "Connection: close" and HTTP/1.0.

#include <algorithm>
#include <cstring>
#include <string_view>
#include <weft/weft.hpp>

#include "signals.hpp"

namespace {

constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\n"
    "Server: weft\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct request {
  std::size_t size = 0;  // head + body bytes; 0 = incomplete
  bool close = false;    // the client asked to close after the response
  bool bad = false;
};

// parse: the first request in `in`.
request parse(std::string_view in) {
  request r;
  const std::size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return r;
  std::string_view head = in.substr(0, head_end + 2);
  const std::size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  if (line.size() < 8 || line.find(' ') == std::string_view::npos) {
    r.bad = true;
    return r;
  }
  const bool http10 = line.substr(line.size() - 8) == "HTTP/1.0";
  bool keep_alive = !http10;
  std::size_t body = 0;
  head.remove_prefix(line_end + 2);
  while (!head.empty()) {
    const std::size_t eol = head.find("\r\n");
    const std::string_view h = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = h.substr(0, colon + 1);
    const std::string_view value = trim(h.substr(colon + 1));
    if (iequals_prefix(name, "connection:")) {
      if (iequals_prefix(value, "close")) keep_alive = false;
      if (iequals_prefix(value, "keep-alive")) keep_alive = true;
    } else if (iequals_prefix(name, "content-length:")) {
      body = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || body > (std::size_t{1} << 32)) {
          r.bad = true;
          return r;
        }
        body = body * 10 + static_cast<std::size_t>(c - '0');
      }
    }
  }
  const std::size_t total = head_end + 4 + body;
  if (total > in.size()) {
    // Body not all here yet: report its full size so the caller can skip
    // bytes as they arrive.
    r.size = total;
    r.close = !keep_alive;
    return r;
  }
  r.size = total;
  r.close = !keep_alive;
  return r;
}

void serve(weft::net::conn c) {
  // Small buffers keep a connection's stack to one page: what a request
  // touches stays in a few cache lines. A head must fit in `in`.
  char in[2048];
  char out[1024];  // responses to pipelined requests, batched into one write
  std::size_t have = 0;
  std::size_t skip = 0;  // body bytes of the last request still to discard
  try {
    for (;;) {
      std::size_t n = c.read(std::as_writable_bytes(std::span(in + have, sizeof in - have)));
      if (n == 0) return;
      if (skip != 0) {
        const std::size_t s = std::min(skip, n);
        std::memmove(in + have, in + have + s, n - s);
        n -= s;
        skip -= s;
      }
      have += n;
      std::size_t pos = 0, answered = 0;
      bool close = false;
      while (!close && pos < have) {
        const request r = parse(std::string_view(in + pos, have - pos));
        if (r.bad) return;
        if (r.size == 0) break;
        ++answered;
        close = r.close;
        if (r.size > have - pos) {  // body continues beyond the buffer
          skip = r.size - (have - pos);
          pos = have;
        } else {
          pos += r.size;
        }
      }
      if (answered == 1) {
        c.write(std::as_bytes(std::span(response.data(), response.size())));
      } else {
        // Pipelined requests: their (identical) responses in few writes.
        while (answered != 0) {
          std::size_t used = 0;
          for (; answered != 0 && used + response.size() <= sizeof out; --answered) {
            std::memcpy(out + used, response.data(), response.size());
            used += response.size();
          }
          c.write(std::as_bytes(std::span(out, used)));
        }
      }
      if (close) return;
      std::memmove(in, in + pos, have - pos);
      have -= pos;
      if (have == sizeof in) return;  // a request head larger than the buffer
    }
  } catch (const std::system_error&) {
    // Reset by the client or gone mid-write: drop the connection.
  }
}

}  // namespace

int main(int argc, char** argv) {
  return example::serve_until_stopped("http_hello", argc, argv, serve);
}
