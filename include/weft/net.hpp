#pragma once
// weft/net.hpp: TCP for fibers, in blocking style (Go's net package).
//
// Blocking calls park the calling fiber on the runtime's netpoller; the
// worker thread runs other fibers meanwhile. Descriptors are non-blocking,
// close-on-exec, and written with MSG_NOSIGNAL: a peer that resets or a
// broken pipe is an exception, never a SIGPIPE. weft never changes SIGPIPE's
// disposition.
//
// Errors
//   * A failing system call throws std::system_error carrying its errno
//     (std::generic_category()), e.g. ECONNREFUSED, ECONNRESET, EPIPE.
//   * An expired deadline throws std::system_error with errc::timed_out.
//   * Any operation on a conn or listener that was closed, by any fiber or
//     thread, throws std::system_error with errc::operation_canceled; so
//     does an operation that was blocked in it when it was closed. That
//     includes close() itself: closing twice throws (Go's Close returns an
//     error), while the destructor of a closed object does nothing. A
//     default-constructed or moved-from object behaves as a closed one.
//   * read_exactly at the end of the stream throws unexpected_eof.
//   * A malformed address throws std::system_error with errc::invalid_argument.
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
//   deadline changed by another party while it is blocked takes effect
//   within 100 ms. dial resolves names on the calling thread.
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

namespace weft {
namespace detail {
struct poll_desc;
struct net_access;
}  // namespace detail

namespace net {

// unexpected_eof: read_exactly reached the end of the stream first.
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
  // is empty). Blocks until data arrives or the read deadline passes.
  std::size_t read(std::span<std::byte> buf);
  // read_exactly: fill `buf` completely; throws unexpected_eof if the
  // stream ends first (the bytes read so far are in `buf`).
  void read_exactly(std::span<std::byte> buf);
  // write: write every byte of `buf`, blocking while the socket's buffer is
  // full. On an error or an expired deadline part of `buf` may have been
  // sent.
  void write(std::span<const std::byte> buf);

  // set_deadline: the time after which blocked and future reads and writes
  // throw timed_out; time_point::max() clears it. It also applies to an
  // operation that is blocked right now (Go semantics); a deadline in the
  // past makes operations fail at once, even if data is available.
  void set_deadline(std::chrono::steady_clock::time_point t);
  void set_read_deadline(std::chrono::steady_clock::time_point t);
  void set_write_deadline(std::chrono::steady_clock::time_point t);

  // shutdown_write: send FIN; the peer reads end of stream, and this side
  // can still read.
  void shutdown_write();
  // close: close the connection; operations blocked in it (in any fiber or
  // thread) throw operation_canceled. The descriptor is closed once they
  // have left. Throws operation_canceled if it was already closed.
  void close();

  // fd: the descriptor (valid until close).
  int fd() const;
  // local_address / remote_address: "127.0.0.1:8080" or "[::1]:8080"; an
  // IPv4-mapped IPv6 address prints as IPv4.
  std::string local_address() const;
  std::string remote_address() const;

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
  // accepted are skipped.
  conn accept();
  std::uint16_t port() const;
  // address: the bound address, e.g. "127.0.0.1:8080" or "[::]:8080".
  std::string address() const;
  // close: stop listening; a fiber blocked in accept() throws
  // operation_canceled. Throws operation_canceled if already closed.
  void close();

 private:
  friend struct weft::detail::net_access;
  listener(detail::poll_desc* pd, std::uint32_t gen) noexcept : pd_(pd), gen_(gen) {}
  detail::poll_desc* pd_ = nullptr;
  std::uint32_t gen_ = 0;
};

// listen: listen on "host:port". "127.0.0.1:8080", "[::1]:0", and ":0"
// (every interface, IPv6 and IPv4 on one dual-stack socket where the host
// allows, else IPv4). Port 0 picks a free port (see listener::port). A host
// name is resolved and its first address used.
listener listen(std::string_view address, int backlog = 4096);

// dial: connect to "host:port" (an IPv4 or IPv6 literal, or a name resolved
// without stalling other fibers), trying each resolved address in order
// until one connects. `timeout` covers the whole call, resolution and every
// address included; as in Go's DialTimeout, zero means no timeout (a
// negative one expires at once). An empty host means the local system.
conn dial(std::string_view address, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// wait_readable / wait_writable: block until the non-blocking descriptor
// `fd` (socket, pipe, eventfd, ...) is readable / writable, has hung up or
// has an error. Throws timed_out once `deadline` passes. The descriptor
// stays the caller's: weft registers it only while waiting, and it must
// not be closed while a fiber waits on it.
void wait_readable(int fd, std::chrono::steady_clock::time_point deadline =
                               std::chrono::steady_clock::time_point::max());
void wait_writable(int fd, std::chrono::steady_clock::time_point deadline =
                               std::chrono::steady_clock::time_point::max());

}  // namespace net
}  // namespace weft
