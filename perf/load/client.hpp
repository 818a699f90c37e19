#pragma once
// client.hpp: one weft-load thread: an edge-triggered epoll loop driving its
// share of the connections through connect, a verified handshake ping, and the
// 64-byte echo ping-pong.
//
// Design
//   Each connection has exactly one 64-byte message in flight. A connection
//   counts as opened only once its first ping came back intact: a completed
//   TCP handshake only means the server's kernel queued it, so limiting
//   "connecting or awaiting the first echo" (max_pending) is what keeps the
//   server's accept queue from overflowing and SYNs from being dropped (which
//   would cost a 1 s retransmit and make connect times meaningless).
//   Descriptors are registered once, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, and
//   never re-armed. A read asks for exactly the bytes still missing; a short
//   read means the socket was drained, and new bytes raise a new edge, so each
//   message costs one write and one read system call plus a share of epoll_wait.
//   Rejected: blocking sockets with a thread per connection (the load generator
//   would then cost more than the servers it measures), io_uring (not every
//   kernel, and the servers use epoll anyway).
//
// Invariants
//   L1  Only the owning thread touches its connections and totals_; the
//       coordinator reads live counters (relaxed) and totals() after join().
//   L2  A message is counted and its latency recorded iff the phase was
//       `measure` when its echo completed.

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "histogram.hpp"

namespace load {

enum class phase : int { connect = 0, run = 1, measure = 2, drain = 3, stop = 4 };

constexpr unsigned kMessageSize = 64;

struct config {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  unsigned conns = 10000;
  unsigned threads = 1;
  double connect_rate = 20000;    // new connection attempts per second, all threads together
  unsigned max_pending = 256;     // per thread: connecting or awaiting the first echo
  unsigned connect_retries = 5;   // further attempts after a failed connect
  double connect_timeout_s = 10;  // one attempt, until the first echo
};

// live_counters: progress, written by the owning thread with relaxed stores and
// read by the coordinator with relaxed loads (monotonic counts; no ordering needed).
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> opened{0};
  std::atomic<std::uint64_t> failed{0};    // connections given up on
  std::atomic<std::uint64_t> messages{0};  // completed echoes, all phases
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> outstanding{0};  // messages awaiting their echo
};

struct totals {
  histogram rtt_ns;  // measured window only (L2)
  std::uint64_t measured = 0;
  std::uint64_t opened = 0;
  std::uint64_t failed = 0;
  std::uint64_t connect_errors = 0;  // failed attempts, retried or not
  std::uint64_t io_errors = 0;       // reset, error or end of stream on an open connection
  std::uint64_t verify_errors = 0;   // wrong bytes (the connection is then closed)
  std::uint64_t unanswered = 0;      // pings still without echo when the drain timed out
};

// fill_message: the 64 bytes of message `seq` on connection `id` (distinct for
// every connection and sequence number, so misrouted or stale bytes never verify).
void fill_message(std::uint32_t id, std::uint64_t seq, unsigned char* out);

class client_thread {
 public:
  // The connections with global ids first, first + stride, ... (count of them).
  client_thread(const config& cfg, const std::atomic<int>& ph, unsigned first, unsigned stride,
                unsigned count);
  ~client_thread();
  client_thread(const client_thread&) = delete;
  client_thread& operator=(const client_thread&) = delete;

  void run();   // the thread body; returns after the `stop` phase, all sockets closed
  void wake();  // from the coordinator: a phase changed
  live_counters& live() { return live_; }
  const totals& result() const { return totals_; }

 private:
  struct conn;
  enum class state : std::uint8_t;

  void start_connects(std::int64_t now);
  void start_one(conn& c, std::int64_t now);
  void on_event(conn& c, std::uint32_t events);
  void on_connected(conn& c);
  void send_ping(conn& c);
  void flush(conn& c);
  void receive(conn& c);
  void complete(conn& c);
  void start_run();
  void check_timeouts(std::int64_t now);
  void close_conn(conn& c);
  void count_error();
  void fail_attempt(conn& c, std::int64_t now);
  void drop(conn& c, std::uint64_t totals::*counter);
  void on_error(conn& c);

  const config cfg_;
  const std::atomic<int>& phase_;  // written by the coordinator (release), read here (acquire)
  std::vector<conn> conns_;
  int epfd_ = -1;
  int wakefd_ = -1;
  std::int64_t connect_start_ns_ = 0;
  std::uint64_t attempts_started_ = 0;
  unsigned pending_ = 0;      // connecting or awaiting the first echo
  unsigned next_fresh_ = 0;   // next connection never attempted
  unsigned outstanding_ = 0;  // connections in state busy
  std::uint64_t messages_ = 0;
  std::vector<unsigned> retry_;  // indices of connections in retry_wait
  double rate_per_ns_ = 0;
  live_counters live_;
  totals totals_;
};

}  // namespace load
