// bufio.cpp: weft::net::reader and writer (weft/bufio.hpp), on the public
// conn API only.
//
// Reader buffer: [0, start_) consumed, [start_, end_) buffered, [end_,
// cap_) free. It is reset to empty whenever it drains (the common case for
// request/response traffic: no copying at all), compacted only when a
// token needs room at the end, and doubled (up to the limit) only when the
// buffered bytes fill it. read_until remembers how far it has scanned
// (scanned_), so a line arriving in many small reads is scanned once.

#include "weft/bufio.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "weft/context.hpp"

namespace weft::net {
namespace {

constexpr std::size_t first_buffer = 4096;

[[noreturn]] void throw_code(const std::error_code& ec, const char* api) {
  throw std::system_error(ec, api);
}

[[noreturn]] void throw_eof(const char* api, std::size_t got, std::size_t want) {
  throw unexpected_eof(std::string(api) + ": end of stream after " + std::to_string(got) + " of " +
                       std::to_string(want) + " bytes");
}

std::string_view chomp(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

std::size_t conn_read(conn& c, const context* ctx, std::span<std::byte> buf, std::error_code& ec) {
  return ctx != nullptr ? c.read(*ctx, buf, ec) : c.read(buf, ec);
}

}  // namespace

// ---- reader ----

reader::reader(conn& c, std::size_t limit) : c_(&c), limit_(limit) {
  if (limit < 16) throw std::invalid_argument("weft::net::reader: the limit must be at least 16");
}

reader::reader(reader&& o) noexcept
    : c_(o.c_),
      limit_(o.limit_),
      buf_(std::move(o.buf_)),
      cap_(std::exchange(o.cap_, 0)),
      start_(std::exchange(o.start_, 0)),
      end_(std::exchange(o.end_, 0)),
      scanned_(std::exchange(o.scanned_, 0)),
      eof_(o.eof_) {}

reader& reader::operator=(reader&& o) noexcept {
  if (this != &o) {
    c_ = o.c_;
    limit_ = o.limit_;
    buf_ = std::move(o.buf_);
    cap_ = std::exchange(o.cap_, 0);
    start_ = std::exchange(o.start_, 0);
    end_ = std::exchange(o.end_, 0);
    scanned_ = std::exchange(o.scanned_, 0);
    eof_ = o.eof_;
  }
  return *this;
}

reader::~reader() = default;

// make_room: free space at the end of the buffer, compacting or growing;
// buffer_full when the buffered bytes already reach the limit.
bool reader::make_room(std::error_code& ec) {
  if (start_ == end_) start_ = end_ = 0;
  if (end_ < cap_) return true;
  if (start_ > 0) {
    compact();
    return true;
  }
  if (cap_ >= limit_) {
    ec = weft::errc::buffer_full;
    return false;
  }
  grow();
  return true;
}

// compact: move the buffered bytes to the front.
void reader::compact() noexcept {
  std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
  end_ -= start_;
  start_ = 0;
}

// grow: the first buffer, or one twice as large, never beyond the limit.
void reader::grow() {
  const std::size_t grown = cap_ == 0 ? std::min(first_buffer, limit_) : std::min(2 * cap_, limit_);
  auto fresh = std::make_unique_for_overwrite<char[]>(grown);
  if (end_ != 0) std::memcpy(fresh.get(), buf_.get(), end_);
  buf_ = std::move(fresh);
  cap_ = grown;
}

// fill: one read from the conn into the free space. False on an error
// (ec) or at the end of the stream (eof_, ec clear).
bool reader::fill(const context* ctx, std::error_code& ec) {
  if (eof_) return false;
  if (!make_room(ec)) return false;
  const std::size_t n =
      conn_read(*c_, ctx, std::as_writable_bytes(std::span(buf_.get() + end_, cap_ - end_)), ec);
  if (ec) return false;
  if (n == 0) {
    eof_ = true;
    return false;
  }
  end_ += n;
  return true;
}

std::string_view reader::until(const context* ctx, char delim, std::error_code& ec) {
  ec.clear();
  for (;;) {
    const char* base = buf_.get() + start_;
    const std::size_t have = end_ - start_;
    if (scanned_ < have) {
      if (const void* p = std::memchr(base + scanned_, delim, have - scanned_)) {
        const std::size_t len = static_cast<std::size_t>(static_cast<const char*>(p) - base) + 1;
        start_ += len;
        scanned_ = 0;
        return {base, len};
      }
      scanned_ = have;
    }
    if (have >= limit_) {
      ec = weft::errc::buffer_full;
      return {};
    }
    if (!fill(ctx, ec)) {
      if (ec) return {};
      ec = weft::errc::eof;
      const std::string_view rest(buf_.get() + start_, end_ - start_);  // fill may have moved it
      start_ = end_;
      scanned_ = 0;
      return rest;  // without a delimiter (maybe empty)
    }
  }
}

std::optional<std::string_view> reader::read_until(char delim) {
  std::error_code ec;
  const std::string_view s = until(nullptr, delim, ec);
  if (ec == weft::errc::eof) return s.empty() ? std::nullopt : std::optional(s);
  if (ec) throw_code(ec, "weft::net::reader::read_until");
  return s;
}

std::optional<std::string_view> reader::read_until(const context& ctx, char delim) {
  std::error_code ec;
  const std::string_view s = until(&ctx, delim, ec);
  if (ec == weft::errc::eof) return s.empty() ? std::nullopt : std::optional(s);
  if (ec) throw_code(ec, "weft::net::reader::read_until");
  return s;
}

std::string_view reader::read_until(char delim, std::error_code& ec) {
  return until(nullptr, delim, ec);
}

std::string_view reader::read_until(const context& ctx, char delim, std::error_code& ec) {
  return until(&ctx, delim, ec);
}

std::optional<std::string_view> reader::read_line() {
  std::error_code ec;
  const std::string_view s = until(nullptr, '\n', ec);
  if (ec == weft::errc::eof) return s.empty() ? std::nullopt : std::optional(chomp(s));
  if (ec) throw_code(ec, "weft::net::reader::read_line");
  return chomp(s);
}

std::optional<std::string_view> reader::read_line(const context& ctx) {
  std::error_code ec;
  const std::string_view s = until(&ctx, '\n', ec);
  if (ec == weft::errc::eof) return s.empty() ? std::nullopt : std::optional(chomp(s));
  if (ec) throw_code(ec, "weft::net::reader::read_line");
  return chomp(s);
}

std::string_view reader::read_line(std::error_code& ec) { return chomp(until(nullptr, '\n', ec)); }

std::string_view reader::read_line(const context& ctx, std::error_code& ec) {
  return chomp(until(&ctx, '\n', ec));
}

std::string_view reader::peek_n(const context* ctx, std::size_t n, std::error_code& ec) {
  ec.clear();
  if (n > limit_) {
    ec = weft::errc::buffer_full;
    return {};
  }
  while (end_ - start_ < n) {
    // Room for all n bytes at once, so the view is contiguous.
    if (cap_ - start_ < n) {
      if (start_ > 0) compact();
      while (cap_ < n) grow();
    }
    if (!fill(ctx, ec)) {
      if (!ec) ec = weft::errc::eof;
      return {buf_.get() + start_, end_ - start_};
    }
  }
  return {buf_.get() + start_, n};
}

std::string_view reader::peek(std::size_t n) {
  std::error_code ec;
  const std::string_view s = peek_n(nullptr, n, ec);
  if (ec == weft::errc::eof) throw_eof("weft::net::reader::peek", s.size(), n);
  if (ec) throw_code(ec, "weft::net::reader::peek");
  return s;
}

std::string_view reader::peek(const context& ctx, std::size_t n) {
  std::error_code ec;
  const std::string_view s = peek_n(&ctx, n, ec);
  if (ec == weft::errc::eof) throw_eof("weft::net::reader::peek", s.size(), n);
  if (ec) throw_code(ec, "weft::net::reader::peek");
  return s;
}

std::string_view reader::peek(std::size_t n, std::error_code& ec) { return peek_n(nullptr, n, ec); }

std::string_view reader::peek(const context& ctx, std::size_t n, std::error_code& ec) {
  return peek_n(&ctx, n, ec);
}

void reader::consume(std::size_t n) {
  if (n > end_ - start_) {
    throw std::out_of_range("weft::net::reader::consume: more than is buffered");
  }
  start_ += n;
  scanned_ = scanned_ > n ? scanned_ - n : 0;
}

std::size_t reader::read_some(const context* ctx, std::span<std::byte> buf, std::error_code& ec) {
  ec.clear();
  if (buf.empty()) return 0;
  if (start_ == end_) {
    if (eof_) return 0;
    if (buf.size() >= std::max(cap_, std::min(first_buffer, limit_))) {
      return conn_read(*c_, ctx, buf, ec);  // large: no point copying through the buffer
    }
    if (!fill(ctx, ec)) return 0;
  }
  const std::size_t n = std::min(buf.size(), end_ - start_);
  std::memcpy(buf.data(), buf_.get() + start_, n);
  consume(n);
  return n;
}

std::size_t reader::read_all(const context* ctx, std::span<std::byte> buf, std::error_code& ec) {
  ec.clear();
  const std::size_t from_buffer = std::min(buf.size(), end_ - start_);
  if (from_buffer != 0) std::memcpy(buf.data(), buf_.get() + start_, from_buffer);
  consume(from_buffer);
  std::size_t done = from_buffer;
  if (done == buf.size()) return done;
  if (eof_) {
    ec = weft::errc::eof;
    return done;
  }
  const std::span<std::byte> rest = buf.subspan(done);
  done += ctx != nullptr ? c_->read_exactly(*ctx, rest, ec) : c_->read_exactly(rest, ec);
  if (ec == weft::errc::eof) eof_ = true;
  return done;
}

std::size_t reader::read(std::span<std::byte> buf) {
  std::error_code ec;
  const std::size_t n = read_some(nullptr, buf, ec);
  if (ec) throw_code(ec, "weft::net::reader::read");
  return n;
}

std::size_t reader::read(const context& ctx, std::span<std::byte> buf) {
  std::error_code ec;
  const std::size_t n = read_some(&ctx, buf, ec);
  if (ec) throw_code(ec, "weft::net::reader::read");
  return n;
}

std::size_t reader::read(std::span<std::byte> buf, std::error_code& ec) {
  return read_some(nullptr, buf, ec);
}

std::size_t reader::read(const context& ctx, std::span<std::byte> buf, std::error_code& ec) {
  return read_some(&ctx, buf, ec);
}

void reader::read_exactly(std::span<std::byte> buf) {
  std::error_code ec;
  const std::size_t n = read_all(nullptr, buf, ec);
  if (ec == weft::errc::eof) throw_eof("weft::net::reader::read_exactly", n, buf.size());
  if (ec) throw_code(ec, "weft::net::reader::read_exactly");
}

void reader::read_exactly(const context& ctx, std::span<std::byte> buf) {
  std::error_code ec;
  const std::size_t n = read_all(&ctx, buf, ec);
  if (ec == weft::errc::eof) throw_eof("weft::net::reader::read_exactly", n, buf.size());
  if (ec) throw_code(ec, "weft::net::reader::read_exactly");
}

std::size_t reader::read_exactly(std::span<std::byte> buf, std::error_code& ec) {
  return read_all(nullptr, buf, ec);
}

std::size_t reader::read_exactly(const context& ctx, std::span<std::byte> buf,
                                 std::error_code& ec) {
  return read_all(&ctx, buf, ec);
}

// ---- writer ----

writer::writer(conn& c, std::size_t size) : c_(&c), size_(size) {
  if (size == 0) throw std::invalid_argument("weft::net::writer: the size must be positive");
}

writer::writer(writer&& o) noexcept
    : c_(o.c_), size_(o.size_), buf_(std::move(o.buf_)), n_(std::exchange(o.n_, 0)), err_(o.err_) {}

writer& writer::operator=(writer&& o) noexcept {
  if (this != &o) {
    c_ = o.c_;
    size_ = o.size_;
    buf_ = std::move(o.buf_);
    n_ = std::exchange(o.n_, 0);
    err_ = o.err_;
  }
  return *this;
}

writer::~writer() = default;

// drain: write the buffer out; on an error keep what was not sent.
void writer::drain(const context* ctx, std::error_code& ec) {
  if (n_ == 0) return;
  const std::span<const std::byte> all(buf_.get(), n_);
  const std::size_t sent = ctx != nullptr ? c_->write(*ctx, all, ec) : c_->write(all, ec);
  if (ec) {
    err_ = ec;
    std::memmove(buf_.get(), buf_.get() + sent, n_ - sent);
    n_ -= sent;
    return;
  }
  n_ = 0;
}

void writer::put(const context* ctx, std::span<const std::byte> buf, std::error_code& ec) {
  ec = err_;
  if (ec) return;
  while (buf.size() > size_ - n_) {
    if (n_ == 0) {
      // Larger than the whole buffer: straight to the conn.
      ctx != nullptr ? c_->write(*ctx, buf, ec) : c_->write(buf, ec);
      if (ec) err_ = ec;
      return;
    }
    const std::size_t k = size_ - n_;
    std::memcpy(buf_.get() + n_, buf.data(), k);
    n_ += k;
    buf = buf.subspan(k);
    drain(ctx, ec);
    if (ec) return;
  }
  if (buf.empty()) return;
  if (!buf_) buf_ = std::make_unique_for_overwrite<std::byte[]>(size_);
  std::memcpy(buf_.get() + n_, buf.data(), buf.size());
  n_ += buf.size();
}

void writer::write(std::span<const std::byte> buf) {
  std::error_code ec;
  put(nullptr, buf, ec);
  if (ec) throw_code(ec, "weft::net::writer::write");
}

void writer::write(const context& ctx, std::span<const std::byte> buf) {
  std::error_code ec;
  put(&ctx, buf, ec);
  if (ec) throw_code(ec, "weft::net::writer::write");
}

void writer::write(std::span<const std::byte> buf, std::error_code& ec) { put(nullptr, buf, ec); }

void writer::write(const context& ctx, std::span<const std::byte> buf, std::error_code& ec) {
  put(&ctx, buf, ec);
}

void writer::flush(std::error_code& ec) {
  ec = err_;
  if (!ec) drain(nullptr, ec);
}

void writer::flush(const context& ctx, std::error_code& ec) {
  ec = err_;
  if (!ec) drain(&ctx, ec);
}

void writer::flush() {
  std::error_code ec;
  flush(ec);
  if (ec) throw_code(ec, "weft::net::writer::flush");
}

void writer::flush(const context& ctx) {
  std::error_code ec;
  flush(ctx, ec);
  if (ec) throw_code(ec, "weft::net::writer::flush");
}

}  // namespace weft::net
