#pragma once
// weft/net.hpp: TCP for fibers, in blocking style (Go's net package).
//
// Blocking calls park the calling fiber on the runtime's netpoller; the
// worker thread runs other fibers meanwhile. Descriptors are non-blocking,
// close-on-exec, and written with MSG_NOSIGNAL: a peer that resets or a
// broken pipe is an error (ECONNRESET, EPIPE), never a SIGPIPE. weft never
// changes SIGPIPE's disposition.
//
// Errors
//   Every operation that can fail for network reasons has two forms. The
//   throwing form throws std::system_error; the form that takes a
//   std::error_code& (last argument, Asio's convention) sets it instead and
//   never throws for those errors (it clears it on success). Both still
//   throw std::bad_alloc, std::logic_error for misuse where stated, and let
//   the runtime's shutdown unwinding pass. The codes:
//   * The errno of a failing system call (std::generic_category()):
//     ECONNRESET and EPIPE (the peer reset or went away), ECONNREFUSED,
//     ENETUNREACH, EHOSTUNREACH, EADDRINUSE, EACCES, ...
//   * std::errc::timed_out: a deadline set on the conn, or dial's timeout.
//   * std::errc::operation_canceled: the conn or listener was closed, by
//     any fiber or thread, before or during the operation. That includes
//     close() itself: closing twice is an error (Go's Close returns one),
//     while the destructor of a closed object does nothing. A
//     default-constructed or moved-from object behaves as a closed one.
//   * weft::errc::canceled / weft::errc::deadline_exceeded: the context
//     the operation was given is done (weft/context.hpp). They compare
//     equal to std::errc::operation_canceled and std::errc::timed_out.
//   * weft::errc::eof: read_exactly reached the end of the stream first
//     (the throwing form throws unexpected_eof instead).
//   * std::errc::invalid_argument: a malformed address; names that do not
//     resolve carry getaddrinfo's EAI_* code (category "getaddrinfo").
//
// Contexts
//   The blocking calls also take a weft::context as their first argument
//   (Go's DialContext): the call returns with the context's error as soon
//   as the context is done, waking it if it is blocked; the conn stays
//   usable. The background() context costs nothing. A call queued behind
//   another one in the same direction (two fibers reading one conn) sees
//   the cancellation once it is its turn.
//
// Bytes and characters
//   read and read_exactly take a std::span<std::byte> or a std::span<char>
//   (a char array, std::string or std::vector<char> converts); write takes
//   a std::span<const std::byte> or a std::string_view. A non-const char
//   array is refused by write (it would be read up to its first NUL):
//   write(std::string_view(buf, n)).
//
// Concurrency
//   A conn or listener may be used by several fibers at once, as in Go:
//   reads are serialised with reads, writes with writes (a write() is never
//   interleaved with another), and close() from any fiber or thread wakes
//   every operation blocked in it.
//
// Plain threads (and fibers inside weft::blocking)
//   Every function also works outside a fiber, with or without a running
//   runtime: a blocking call then blocks the calling thread in poll(2),
//   honouring deadlines. close() from another party wakes it at once; a
//   deadline changed, or a context cancelled, by another party while it is
//   blocked takes effect within 100 ms (a context's deadline on time). dial
//   resolves names on the calling thread.
//
// Lifetime
//   Objects may outlive the run() that created them and be used by plain
//   threads or by a later run. When run() returns, fibers blocked in accept
//   or read are unwound like any parked fiber; destructors close their
//   descriptors.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "weft/detail/cxx20.hpp"
#include "weft/error.hpp"

namespace weft {
class context;
namespace detail {
struct poll_desc;
struct net_access;
}  // namespace detail

namespace net {

// unexpected_eof: read_exactly (throwing form) reached the end of the
// stream first.
struct unexpected_eof : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// conn: a connected TCP stream (TCP_NODELAY set, as in Go). Move-only; the
// destructor closes it.
class conn {
 public:
  conn() noexcept = default;
  conn(conn&& other) noexcept : pd_(other.pd_), gen_(other.gen_) { other.pd_ = nullptr; }
  // Move assignment closes the connection this object held, if any.
  conn& operator=(conn&& other) noexcept;
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;
  ~conn();

  // read: at least one byte, or 0 at the end of the stream (or when `buf`
  // is empty; the end of the stream is not an error). Blocks until data
  // arrives, the read deadline passes or `ctx` is done.
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

  // read_exactly: fill `buf` completely. At the end of the stream the
  // throwing form throws unexpected_eof, the other reports weft::errc::eof;
  // the bytes read so far are in `buf`, and the error_code forms return
  // how many.
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

  // write: write every byte of `buf`, blocking while the socket's buffer is
  // full. After an error (ECONNRESET, EPIPE), an expired deadline or a
  // done context, part of `buf` may have been sent; the error_code forms
  // return how much.
  void write(std::span<const std::byte> buf);
  std::size_t write(std::span<const std::byte> buf, std::error_code& ec);
  void write(const context& ctx, std::span<const std::byte> buf);
  std::size_t write(const context& ctx, std::span<const std::byte> buf, std::error_code& ec);
  void write(std::string_view s) { write(std::as_bytes(std::span(s.data(), s.size()))); }
  std::size_t write(std::string_view s, std::error_code& ec) {
    return write(std::as_bytes(std::span(s.data(), s.size())), ec);
  }
  void write(const context& ctx, std::string_view s) {
    write(ctx, std::as_bytes(std::span(s.data(), s.size())));
  }
  std::size_t write(const context& ctx, std::string_view s, std::error_code& ec) {
    return write(ctx, std::as_bytes(std::span(s.data(), s.size())), ec);
  }
  template <std::size_t N>
  void write(char (&)[N]) = delete;  // a buffer, not a string: see "Bytes and characters"
  template <std::size_t N>
  std::size_t write(char (&)[N], std::error_code&) = delete;
  template <std::size_t N>
  void write(const context&, char (&)[N]) = delete;
  template <std::size_t N>
  std::size_t write(const context&, char (&)[N], std::error_code&) = delete;

  // set_deadline: the time after which blocked and future reads and writes
  // fail with timed_out; time_point::max() clears it. It also applies to an
  // operation that is blocked right now (Go semantics); a deadline in the
  // past makes operations fail at once, even if data is available. Fails
  // only with operation_canceled (closed).
  void set_deadline(std::chrono::steady_clock::time_point t);
  void set_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec);
  void set_read_deadline(std::chrono::steady_clock::time_point t);
  void set_read_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec);
  void set_write_deadline(std::chrono::steady_clock::time_point t);
  void set_write_deadline(std::chrono::steady_clock::time_point t, std::error_code& ec);

  // shutdown_write: send FIN; the peer reads end of stream, and this side
  // can still read. Errors: ENOTCONN (the peer reset), operation_canceled.
  void shutdown_write();
  void shutdown_write(std::error_code& ec);
  // close: close the connection; operations blocked in it (in any fiber or
  // thread) fail with operation_canceled. The descriptor is closed once
  // they have left. Fails with operation_canceled if it was already closed.
  void close();
  void close(std::error_code& ec) noexcept;

  // fd: the descriptor (valid until close).
  int fd() const;
  // local_address / remote_address: "127.0.0.1:8080" or "[::1]:8080"; an
  // IPv4-mapped IPv6 address prints as IPv4.
  // remote_address fails with ENOTCONN once the peer has reset.
  std::string local_address() const;
  std::string local_address(std::error_code& ec) const;
  std::string remote_address() const;
  std::string remote_address(std::error_code& ec) const;

 private:
  friend struct weft::detail::net_access;
  conn(detail::poll_desc* pd, std::uint32_t gen) noexcept : pd_(pd), gen_(gen) {}
  detail::poll_desc* pd_ = nullptr;  // the descriptor's record (type-stable)
  std::uint32_t gen_ = 0;            // its incarnation when this conn was made
};

// listener: a listening TCP socket (SO_REUSEADDR set). Move-only; the
// destructor closes it.
class listener {
 public:
  listener() noexcept = default;
  listener(listener&& other) noexcept : pd_(other.pd_), gen_(other.gen_) { other.pd_ = nullptr; }
  listener& operator=(listener&& other) noexcept;
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  ~listener();

  // accept: the next connection. When the process runs out of descriptors
  // (EMFILE, ENFILE) or memory for sockets, accept backs off (2 ms, doubling
  // up to 100 ms) and tries again instead of failing: a server keeps
  // serving once descriptors free up. Connections aborted before they were
  // accepted are skipped. Fails with operation_canceled once the listener
  // is closed, or with the context's error.
  conn accept();
  conn accept(std::error_code& ec);
  conn accept(const context& ctx);
  conn accept(const context& ctx, std::error_code& ec);
  std::uint16_t port() const;
  // address: the bound address, e.g. "127.0.0.1:8080" or "[::]:8080".
  std::string address() const;
  // close: stop listening; a fiber blocked in accept() fails with
  // operation_canceled. Fails with operation_canceled if already closed.
  void close();
  void close(std::error_code& ec) noexcept;

 private:
  friend struct weft::detail::net_access;
  listener(detail::poll_desc* pd, std::uint32_t gen) noexcept : pd_(pd), gen_(gen) {}
  detail::poll_desc* pd_ = nullptr;
  std::uint32_t gen_ = 0;
};

// listen: listen on "host:port". "127.0.0.1:8080", "[::1]:0", and ":0"
// (every interface, IPv6 and IPv4 on one dual-stack socket where the host
// allows, else IPv4). Port 0 picks a free port (see listener::port). A host
// name is resolved and its first address used. Errors: EADDRINUSE, EACCES,
// EADDRNOTAVAIL, invalid_argument, getaddrinfo's codes.
listener listen(std::string_view address, int backlog = 4096);
listener listen(std::string_view address, std::error_code& ec);
listener listen(std::string_view address, int backlog, std::error_code& ec);

// dial: connect to "host:port" (an IPv4 or IPv6 literal, or a name resolved
// without stalling other fibers), trying each resolved address in order
// until one connects. `timeout` covers the whole call, resolution and every
// address included; as in Go's DialTimeout, zero means no timeout (a
// negative one expires at once; milliseconds::max() in effect never
// does). An empty host means the local system.
// With a context, the call also ends when it is done (a name being resolved
// is given up when resolution returns). Errors: ECONNREFUSED, ENETUNREACH,
// EHOSTUNREACH, timed_out, invalid_argument, getaddrinfo's codes, the
// context's; after several addresses failed, the last address's error.
conn dial(std::string_view address, std::chrono::milliseconds timeout = std::chrono::seconds(30));
conn dial(std::string_view address, std::error_code& ec);
conn dial(std::string_view address, std::chrono::milliseconds timeout, std::error_code& ec);
conn dial(const context& ctx, std::string_view address,
          std::chrono::milliseconds timeout = std::chrono::seconds(30));
conn dial(const context& ctx, std::string_view address, std::error_code& ec);
conn dial(const context& ctx, std::string_view address, std::chrono::milliseconds timeout,
          std::error_code& ec);

// wait_readable / wait_writable: block until the non-blocking descriptor
// `fd` (socket, pipe, eventfd, ...) is readable / writable, has hung up or
// has an error. Fails with timed_out once `deadline` passes (at once for a
// past one, time_point::min() included; never for time_point::max()), with
// EBADF for a bad descriptor, with the context's error. The descriptor
// stays the caller's: weft registers it only while waiting, and it must not
// be closed while a fiber waits on it.
void wait_readable(int fd, std::chrono::steady_clock::time_point deadline =
                               std::chrono::steady_clock::time_point::max());
void wait_readable(int fd, std::chrono::steady_clock::time_point deadline, std::error_code& ec);
void wait_readable(const context& ctx, int fd);
void wait_readable(const context& ctx, int fd, std::error_code& ec);
void wait_writable(int fd, std::chrono::steady_clock::time_point deadline =
                               std::chrono::steady_clock::time_point::max());
void wait_writable(int fd, std::chrono::steady_clock::time_point deadline, std::error_code& ec);
void wait_writable(const context& ctx, int fd);
void wait_writable(const context& ctx, int fd, std::error_code& ec);

}  // namespace net
}  // namespace weft
