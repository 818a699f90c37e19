// resp_server: a small Redis-protocol (RESP) server on weft: GET, SET, INCR,
// DEL, PING, ECHO, pipelining, one fiber per connection, graceful shutdown.
//
//   resp_server [ADDRESS] [GRACE_MS]    (default 127.0.0.1:6379, 5000 ms; WEFT_WORKERS=N)
//
// Prints "listening on ADDRESS" once ready. Works with redis-cli and
// redis-benchmark (-t ping,set,get,incr). On SIGINT or SIGTERM it stops
// accepting, lets every connection finish the commands it has already
// received (and flush their replies) for up to GRACE_MS, closes idle
// connections at once, and exits 0.
//
// What it shows: every network call takes a std::error_code (a reset peer
// ends one connection, never the server), a weft::net::reader parses the
// protocol and a writer batches pipelined replies, contexts carry the two
// shutdown stages, a weft::group owns the connection fibers, and
// weft::signal::notify turns SIGTERM into a channel value.

#include <array>
#include <cctype>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>
#include <weft/weft.hpp>

namespace {

using namespace std::chrono_literals;

// ---- the data ----

// store: strings by key, in shards so that fibers on different workers
// rarely wait for one another. A weft::mutex parks a fiber that has to wait.
class store {
 public:
  std::optional<std::string> get(const std::string& key) {
    shard& s = shard_of(key);
    std::lock_guard<weft::mutex> g(s.mu);
    const auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }
  void set(const std::string& key, std::string value) {
    shard& s = shard_of(key);
    std::lock_guard<weft::mutex> g(s.mu);
    s.map.insert_or_assign(key, std::move(value));
  }
  bool del(const std::string& key) {
    shard& s = shard_of(key);
    std::lock_guard<weft::mutex> g(s.mu);
    return s.map.erase(key) != 0;
  }
  // incr: the new value, or nullopt if the value is not a 64-bit integer.
  std::optional<long long> incr(const std::string& key) {
    shard& s = shard_of(key);
    std::lock_guard<weft::mutex> g(s.mu);
    std::string& v = s.map[key];
    long long n = 0;
    if (!v.empty()) {
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
    }
    if (n == LLONG_MAX) return std::nullopt;
    v = std::to_string(++n);
    return n;
  }

 private:
  struct shard {
    weft::mutex mu;
    std::unordered_map<std::string, std::string> map;
  };
  shard& shard_of(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % shards_.size()];
  }
  std::array<shard, 64> shards_;
};

// ---- the protocol ----

constexpr std::size_t max_args = 1024;
constexpr long long max_bulk = 1 << 20;

struct protocol_error {
  const char* what;
};

// parse_count: the number after the type byte of "*3" or "$5".
long long parse_count(std::string_view line) {
  long long n = 0;
  const auto [end, ec] = std::from_chars(line.data() + 1, line.data() + line.size(), n);
  if (ec != std::errc() || end != line.data() + line.size()) throw protocol_error{"invalid length"};
  return n;
}

// reader_has_line / reader_has: whether the next read_line / read_exactly
// of `n` bytes can complete from what is buffered, without waiting.
bool reader_has_line(weft::net::reader& in) {
  return in.peek(in.buffered()).find('\n') != std::string_view::npos;
}
bool reader_has(weft::net::reader& in, std::size_t n) { return in.buffered() >= n; }

// read_command: the next command's arguments. `idle` governs the wait for
// its first byte (the connection is idle until then), `busy` the rest.
// Before any wait the replies written so far are flushed: a client that
// pipelines gets the answers to its complete commands even while the next
// one is still arriving. Returns false, with ec set, when the connection
// is done.
bool read_command(weft::net::reader& in, weft::net::writer& out, const weft::context& idle,
                  const weft::context& busy, std::vector<std::string>& args, std::error_code& ec) {
  if (in.buffered() == 0) {
    out.flush(busy, ec);
    if (ec) return false;
    in.peek(idle, 1, ec);
    if (ec) return false;
  }
  const auto line_ready = [&] {
    if (!reader_has_line(in)) out.flush(busy, ec);
    return !ec;
  };
  if (!line_ready()) return false;
  std::string_view line = in.read_line(busy, ec);
  if (ec) return false;
  args.clear();
  if (line.empty()) return true;
  if (line[0] != '*') {  // an inline command: words separated by spaces
    for (std::size_t pos = 0; pos < line.size();) {
      const std::size_t end = std::min(line.find(' ', pos), line.size());
      if (end > pos) args.emplace_back(line.substr(pos, end - pos));
      pos = end + 1;
    }
    return true;
  }
  const long long n = parse_count(line);
  if (n < 0 || n > static_cast<long long>(max_args))
    throw protocol_error{"invalid multibulk length"};
  for (long long i = 0; i < n; ++i) {
    if (!line_ready()) return false;
    line = in.read_line(busy, ec);
    if (ec) return false;
    if (line.empty() || line[0] != '$') throw protocol_error{"expected '$'"};
    const long long len = parse_count(line);
    if (len < 0 || len > max_bulk) throw protocol_error{"invalid bulk length"};
    std::string& arg = args.emplace_back(static_cast<std::size_t>(len) + 2, '\0');
    if (!reader_has(in, arg.size())) out.flush(busy, ec);
    if (ec) return false;
    in.read_exactly(busy, arg, ec);
    if (ec) return false;
    if (arg[arg.size() - 2] != '\r' || arg.back() != '\n') throw protocol_error{"expected CRLF"};
    arg.resize(arg.size() - 2);
  }
  return true;
}

// reply_number: ":42\r\n" (an integer) or "$5\r\n" (a bulk string's header).
void reply_number(weft::net::writer& out, char type, long long n, std::error_code& ec) {
  char buf[32];
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.write(std::string_view(buf, static_cast<std::size_t>(end - buf)), ec);
}

void reply_bulk(weft::net::writer& out, std::string_view s, std::error_code& ec) {
  reply_number(out, '$', static_cast<long long>(s.size()), ec);
  out.write(s, ec);
  out.write("\r\n", ec);
}

bool is(const std::string& arg, std::string_view name) {
  if (arg.size() != name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(arg[i])) != name[i]) return false;
  }
  return true;
}

// execute: one command's reply. False: the client asked to close (QUIT).
bool execute(store& db, std::vector<std::string>& args, weft::net::writer& out,
             std::error_code& ec) {
  if (args.empty()) return true;
  const std::string& cmd = args[0];
  const std::size_t n = args.size();
  if (is(cmd, "PING") && n <= 2) {
    n == 1 ? out.write("+PONG\r\n", ec) : reply_bulk(out, args[1], ec);
  } else if (is(cmd, "ECHO") && n == 2) {
    reply_bulk(out, args[1], ec);
  } else if (is(cmd, "GET") && n == 2) {
    const std::optional<std::string> v = db.get(args[1]);
    v ? reply_bulk(out, *v, ec) : out.write("$-1\r\n", ec);
  } else if (is(cmd, "SET") && n >= 3) {
    db.set(args[1], std::move(args[2]));  // options (EX, NX, ...) are not supported
    out.write("+OK\r\n", ec);
  } else if (is(cmd, "INCR") && n == 2) {
    const std::optional<long long> v = db.incr(args[1]);
    v ? reply_number(out, ':', *v, ec)
      : out.write("-ERR value is not an integer or out of range\r\n", ec);
  } else if (is(cmd, "DEL") && n >= 2) {
    long long k = 0;
    for (std::size_t i = 1; i < n; ++i) k += db.del(args[i]) ? 1 : 0;
    reply_number(out, ':', k, ec);
  } else if (is(cmd, "CONFIG") || is(cmd, "COMMAND")) {
    out.write("*0\r\n", ec);  // what redis-benchmark and redis-cli ask at start
  } else if (is(cmd, "QUIT")) {
    out.write("+OK\r\n", ec);
    return false;
  } else {
    out.write("-ERR unknown command or wrong number of arguments for '", ec);
    out.write(cmd, ec);
    out.write("'\r\n", ec);
  }
  return true;
}

// serve: one connection. `accepting` ends when shutdown begins: an idle
// connection closes then. `finishing` ends when the grace period is over:
// commands still running are abandoned then.
void serve(weft::net::conn c, store& db, const weft::context& accepting,
           const weft::context& finishing) {
  // This connection's own contexts: waiting on them touches no state
  // shared with other connections.
  const weft::context idle = weft::with_cancel(accepting);
  const weft::context busy = weft::with_cancel(finishing);
  weft::net::reader in(c);
  weft::net::writer out(c, 16 * 1024);
  std::vector<std::string> args;
  std::error_code ec;
  try {
    for (;;) {
      // Pipelined commands are answered in one write: read_command flushes
      // only when it has to wait for input.
      if (!read_command(in, out, idle, busy, args, ec)) break;
      if (!execute(db, args, out, ec) || ec) break;
    }
  } catch (const protocol_error& e) {
    out.write(std::string("-ERR Protocol error: ") + e.what + "\r\n", ec);
  }
  out.flush(busy, ec);
}

}  // namespace

int main(int argc, char** argv) {
  const char* address = argc > 1 ? argv[1] : "127.0.0.1:6379";
  const auto grace = std::chrono::milliseconds(argc > 2 ? std::atoi(argv[2]) : 5000);
  try {
    return weft::run([&] {
      weft::chan<int> signals = weft::signal::notify({SIGINT, SIGTERM});
      weft::net::listener ln = weft::net::listen(address);
      std::printf("listening on %s\n", ln.address().c_str());
      std::fflush(stdout);
      store db;
      weft::context accepting = weft::with_cancel(weft::background());
      weft::context finishing = weft::with_cancel(weft::background());
      weft::group conns;
      conns.go([&] {
        std::error_code ec;
        for (;;) {
          weft::net::conn c = ln.accept(accepting, ec);
          if (ec) {
            if (ec != std::errc::operation_canceled) {  // not the shutdown
              std::fprintf(stderr, "resp_server: accept: %s\n", ec.message().c_str());
            }
            return;
          }
          conns.go(
              [&, c = std::move(c)]() mutable { serve(std::move(c), db, accepting, finishing); });
        }
      });
      const int sig = *signals.recv();
      std::fprintf(stderr, "resp_server: signal %d: draining for up to %lld ms\n", sig,
                   static_cast<long long>(grace.count()));
      accepting.cancel();
      weft::go([finishing, grace] {
        weft::sleep_for(grace);
        finishing.cancel();
      });
      conns.wait();
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "resp_server: %s\n", e.what());
    return 1;
  }
}
