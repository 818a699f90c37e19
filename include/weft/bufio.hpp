#pragma once
// weft/bufio.hpp: buffered reading and writing on a weft::net::conn (Go's
// bufio): weft::net::reader and weft::net::writer.
//
//   weft::net::reader in(c);                       // 64 KiB limit per line
//   weft::net::writer out(c);
//   std::error_code ec;
//   for (;;) {
//     std::string_view line = in.read_line(ctx, ec);   // "GET /x", no "\r\n"
//     if (ec) break;                                   // eof, buffer_full, reset...
//     out.write("+OK\r\n");
//     if (in.buffered() == 0) out.flush(ec);           // one write per batch of requests
//   }
//
// Every blocking call comes in the four forms weft::net uses: throwing,
// with a std::error_code& (never throws for network errors, see
// weft/net.hpp), and both again with a weft::context first. A reader or
// writer holds a reference to its conn, which must outlive it; it is not
// safe for concurrent use (one reader per conn, one writer per conn; a
// reader and a writer may run in different fibers).
//
// Views: the std::string_view returned by read_until, read_line and peek
// points into the reader's buffer and is valid until the next call on the
// reader (anything that reads, consume, or the destructor).

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>

#include "weft/detail/cxx20.hpp"
#include "weft/error.hpp"
#include "weft/net.hpp"

namespace weft {
class context;
}

namespace weft::net {

// reader: reads from a conn through a buffer that grows on demand up to a
// size limit, so a token (a line, a peek) can never make it grow without
// bound: one that does not fit fails with weft::errc::buffer_full instead.
class reader {
 public:
  static constexpr std::size_t default_limit = 64 * 1024;

  // reader: `limit` bytes at most are buffered (at least 16; smaller is
  // std::invalid_argument). The buffer starts at min(4 KiB, limit), is
  // allocated by the first read, and doubles while a token needs it.
  explicit reader(conn& c, std::size_t limit = default_limit);
  reader(reader&& other) noexcept;
  reader& operator=(reader&& other) noexcept;
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;
  ~reader();

  // read_until: the bytes up to and including the next `delim`. At the end
  // of the stream: the throwing form returns the bytes left (without a
  // delimiter; then nullopt on the next call), the error_code form returns
  // them with weft::errc::eof. A token longer than the limit fails with
  // buffer_full and consumes nothing. On any error the bytes read so far
  // stay buffered, so a call that timed out can be repeated.
  std::optional<std::string_view> read_until(char delim);
  std::string_view read_until(char delim, std::error_code& ec);
  std::optional<std::string_view> read_until(const context& ctx, char delim);
  std::string_view read_until(const context& ctx, char delim, std::error_code& ec);

  // read_line: read_until('\n') without the "\n" or "\r\n" (a lone '\n'
  // ends a line too). The limit counts the line with its ending.
  std::optional<std::string_view> read_line();
  std::string_view read_line(std::error_code& ec);
  std::optional<std::string_view> read_line(const context& ctx);
  std::string_view read_line(const context& ctx, std::error_code& ec);

  // peek: the next `n` bytes, without consuming them (consume(n) does).
  // At the end of the stream first: the throwing form throws
  // unexpected_eof, the other returns what there is with weft::errc::eof.
  // n larger than the limit: buffer_full at once.
  std::string_view peek(std::size_t n);
  std::string_view peek(std::size_t n, std::error_code& ec);
  std::string_view peek(const context& ctx, std::size_t n);
  std::string_view peek(const context& ctx, std::size_t n, std::error_code& ec);

  // consume: drop the next `n` buffered bytes (n <= buffered(), else
  // std::out_of_range).
  void consume(std::size_t n);

  // read: as conn::read: what is buffered, else one read from the conn
  // (straight into `buf` when it is at least as large as the buffer).
  std::size_t read(std::span<std::byte> buf);
  std::size_t read(std::span<std::byte> buf, std::error_code& ec);
  std::size_t read(const context& ctx, std::span<std::byte> buf);
  std::size_t read(const context& ctx, std::span<std::byte> buf, std::error_code& ec);
  std::size_t read(std::span<char> buf) { return read(std::as_writable_bytes(buf)); }
  std::size_t read(std::span<char> buf, std::error_code& ec) {
    return read(std::as_writable_bytes(buf), ec);
  }
  std::size_t read(const context& ctx, std::span<char> buf) {
    return read(ctx, std::as_writable_bytes(buf));
  }
  std::size_t read(const context& ctx, std::span<char> buf, std::error_code& ec) {
    return read(ctx, std::as_writable_bytes(buf), ec);
  }

  // read_exactly: as conn::read_exactly (unexpected_eof, or the count read
  // with weft::errc::eof).
  void read_exactly(std::span<std::byte> buf);
  std::size_t read_exactly(std::span<std::byte> buf, std::error_code& ec);
  void read_exactly(const context& ctx, std::span<std::byte> buf);
  std::size_t read_exactly(const context& ctx, std::span<std::byte> buf, std::error_code& ec);
  void read_exactly(std::span<char> buf) { read_exactly(std::as_writable_bytes(buf)); }
  std::size_t read_exactly(std::span<char> buf, std::error_code& ec) {
    return read_exactly(std::as_writable_bytes(buf), ec);
  }
  void read_exactly(const context& ctx, std::span<char> buf) {
    read_exactly(ctx, std::as_writable_bytes(buf));
  }
  std::size_t read_exactly(const context& ctx, std::span<char> buf, std::error_code& ec) {
    return read_exactly(ctx, std::as_writable_bytes(buf), ec);
  }

  // buffered: bytes read from the conn and not yet returned. A server that
  // answers pipelined requests flushes its writer when this is 0.
  std::size_t buffered() const noexcept { return end_ - start_; }
  std::size_t limit() const noexcept { return limit_; }

 private:
  std::string_view until(const context* ctx, char delim, std::error_code& ec);
  std::string_view peek_n(const context* ctx, std::size_t n, std::error_code& ec);
  std::size_t read_some(const context* ctx, std::span<std::byte> buf, std::error_code& ec);
  std::size_t read_all(const context* ctx, std::span<std::byte> buf, std::error_code& ec);
  bool fill(const context* ctx, std::error_code& ec);
  bool make_room(std::error_code& ec);
  void compact() noexcept;
  void grow();

  conn* c_;
  std::size_t limit_;
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t start_ = 0;    // first unread byte
  std::size_t end_ = 0;      // one past the last buffered byte
  std::size_t scanned_ = 0;  // read_until: bytes after start_ known not to hold its delimiter
  bool eof_ = false;         // the conn reported the end of the stream
};

// writer: collects writes in a buffer and writes it to the conn when it is
// full or on flush(), so many small writes cost one system call. Writes
// larger than the buffer go to the conn directly. Errors are sticky (as in
// Go): after one, every write and flush reports it and the buffered bytes
// stay unsent, since the stream is no longer in a known state. The
// destructor does not flush.
class writer {
 public:
  static constexpr std::size_t default_size = 4096;

  // writer: a buffer of `size` bytes (at least 1), allocated by the first
  // write.
  explicit writer(conn& c, std::size_t size = default_size);
  writer(writer&& other) noexcept;
  writer& operator=(writer&& other) noexcept;
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;
  ~writer();

  // write: buffer `buf`, writing the buffer out when it fills. Blocks only
  // then.
  void write(std::span<const std::byte> buf);
  void write(std::span<const std::byte> buf, std::error_code& ec);
  void write(const context& ctx, std::span<const std::byte> buf);
  void write(const context& ctx, std::span<const std::byte> buf, std::error_code& ec);
  void write(std::string_view s) { write(std::as_bytes(std::span(s.data(), s.size()))); }
  void write(std::string_view s, std::error_code& ec) {
    write(std::as_bytes(std::span(s.data(), s.size())), ec);
  }
  void write(const context& ctx, std::string_view s) {
    write(ctx, std::as_bytes(std::span(s.data(), s.size())));
  }
  void write(const context& ctx, std::string_view s, std::error_code& ec) {
    write(ctx, std::as_bytes(std::span(s.data(), s.size())), ec);
  }
  template <std::size_t N>
  void write(char (&)[N]) = delete;  // a buffer, not a string (weft/net.hpp)
  template <std::size_t N>
  void write(char (&)[N], std::error_code&) = delete;

  // flush: write out everything buffered.
  void flush();
  void flush(std::error_code& ec);
  void flush(const context& ctx);
  void flush(const context& ctx, std::error_code& ec);

  std::size_t buffered() const noexcept { return n_; }
  std::size_t available() const noexcept { return size_ - n_; }

 private:
  void put(const context* ctx, std::span<const std::byte> buf, std::error_code& ec);
  void drain(const context* ctx, std::error_code& ec);

  conn* c_;
  std::size_t size_;
  std::unique_ptr<std::byte[]> buf_;
  std::size_t n_ = 0;
  std::error_code err_;  // sticky
};

}  // namespace weft::net
