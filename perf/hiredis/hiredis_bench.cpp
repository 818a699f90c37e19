// hiredis_bench: many clients each running SET/GET pairs through hiredis
// against a redis-server (tools/hiredis_bench.py starts one), or, with
// --server postgres, one `SELECT $1::int + 1` per operation through libpq's
// synchronous API against a PostgreSQL server; one way of calling a
// blocking library per mode (postgres: hooks, blocking and threads):
//
//   hooks     fibers calling hiredis's synchronous API, weft::hooks linked
//             (the weft-hiredis-hooks binary)
//   blocking  fibers calling it inside weft::blocking()
//   threads   one std::thread per client
//   nonblock  fibers, hiredis's non-blocking API driven by hand with
//             weft::net::wait_readable / wait_writable
//
//   hiredis_bench MODE --port P [--clients 1000] [--ops 100] [--workers N]
//                 [--server redis|postgres]
//
// Prints one JSON line: ops_per_s (commands: SET and GET each count; a
// query for postgres),
// threads (the process's peak OS threads, sampled every millisecond, the
// sampler excluded) and lateness_ms (the worst lateness of a 1 ms ticker:
// a fiber, or a thread in threads mode, sleeping until each next
// millisecond while the clients run).

#include <hiredis/hiredis.h>
#include <time.h>
#ifdef WEFT_BENCH_LIBPQ
#include <libpq-fe.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <weft/weft.hpp>

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct config {
  std::string mode;
  std::string server = "redis";
  int port = 0;
  int clients = 1000;
  int ops = 100;
  unsigned workers = 0;
};

std::atomic<int> g_failures{0};

// ---- the peak thread count, sampled from /proc/self/stat ----

int threads_now() {
  std::FILE* f = std::fopen("/proc/self/stat", "r");
  if (f == nullptr) return -1;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return -1;
  int field = 2, threads = -1;
  for (; *p != '\0'; ++p) {
    if (*p == ' ' && ++field == 20) {
      threads = std::atoi(p + 1);
      break;
    }
  }
  return threads;
}

class thread_sampler {
 public:
  thread_sampler()
      : t_([this] {
          while (!stop_.load()) {
            peak_.store(std::max(peak_.load(), threads_now() - 1));
            timespec ts{0, 1'000'000};
            ::nanosleep(&ts, nullptr);
          }
        }) {}
  int finish() {
    stop_.store(true);
    t_.join();
    return peak_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> peak_{0};
  std::thread t_;
};

// ---- the clients ----

void check(redisReply* r, int type, const char* want) {
  if (r == nullptr || r->type != type || (want != nullptr && std::string(r->str, r->len) != want)) {
    g_failures.fetch_add(1);
  }
  if (r != nullptr) freeReplyObject(r);
}

// Call: how each redisConnect/redisCommand is made (directly, in blocking()).
template <class Call>
void sync_client(const config& c, int id, Call call) {
  redisContext* ctx = call([&] { return redisConnect("127.0.0.1", c.port); });
  if (ctx == nullptr || ctx->err != 0) {
    g_failures.fetch_add(1);
    if (ctx != nullptr) redisFree(ctx);
    return;
  }
  const std::string key = "bench:" + std::to_string(id);
  for (int i = 0; i < c.ops; ++i) {
    const std::string val = std::to_string(i);
    check(
        call([&] {
          return static_cast<redisReply*>(redisCommand(ctx, "SET %s %s", key.c_str(), val.c_str()));
        }),
        REDIS_REPLY_STATUS, "OK");
    check(call([&] { return static_cast<redisReply*>(redisCommand(ctx, "GET %s", key.c_str())); }),
          REDIS_REPLY_STRING, val.c_str());
  }
  redisFree(ctx);
}

#ifdef WEFT_BENCH_LIBPQ
// pq_client: libpq's synchronous API, each call made through `call` like
// sync_client's. libpq waits in poll() (hooked: the fiber parks).
template <class Call>
void pq_client(const config& c, Call call) {
  const std::string conninfo =
      "host=127.0.0.1 port=" + std::to_string(c.port) + " dbname=postgres user=postgres";
  PGconn* conn = call([&] { return PQconnectdb(conninfo.c_str()); });
  if (PQstatus(conn) != CONNECTION_OK) {
    if (g_failures.fetch_add(1) == 0) std::fprintf(stderr, "libpq: %s", PQerrorMessage(conn));
    PQfinish(conn);
    return;
  }
  for (int i = 0; i < c.ops; ++i) {
    const std::string arg = std::to_string(i);
    const char* params[] = {arg.c_str()};
    PGresult* r = call([&] {
      return PQexecParams(conn, "SELECT $1::int + 1", 1, nullptr, params, nullptr, nullptr, 0);
    });
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
        std::atoi(PQgetvalue(r, 0, 0)) != i + 1) {
      g_failures.fetch_add(1);
    }
    PQclear(r);
  }
  PQfinish(conn);
}
#endif

// client: one client of the configured server, its calls made by `call`.
template <class Call>
void client(const config& c, int id, Call call) {
#ifdef WEFT_BENCH_LIBPQ
  if (c.server == "postgres") {
    pq_client(c, call);
    return;
  }
#endif
  sync_client(c, id, call);
}

// nb_command: one command through the non-blocking API, waiting on the
// netpoller whenever hiredis would block.
redisReply* nb_command(redisContext* ctx, const char* fmt, const char* a, const char* b) {
  if (redisAppendCommand(ctx, fmt, a, b) != REDIS_OK) return nullptr;
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx, &done) != REDIS_OK) return nullptr;
    if (!done) weft::net::wait_writable(ctx->fd);
  }
  void* reply = nullptr;
  for (;;) {
    if (redisGetReplyFromReader(ctx, &reply) != REDIS_OK) return nullptr;
    if (reply != nullptr) return static_cast<redisReply*>(reply);
    weft::net::wait_readable(ctx->fd);
    if (redisBufferRead(ctx) != REDIS_OK) return nullptr;
  }
}

void nonblock_client(const config& c, int id) {
  redisContext* ctx = redisConnectNonBlock("127.0.0.1", c.port);
  if (ctx == nullptr || ctx->err != 0) {
    g_failures.fetch_add(1);
    if (ctx != nullptr) redisFree(ctx);
    return;
  }
  weft::net::wait_writable(ctx->fd);  // connected (or failed: the first command says)
  const std::string key = "bench:" + std::to_string(id);
  for (int i = 0; i < c.ops; ++i) {
    const std::string val = std::to_string(i);
    check(nb_command(ctx, "SET %s %s", key.c_str(), val.c_str()), REDIS_REPLY_STATUS, "OK");
    check(nb_command(ctx, "GET %s", key.c_str(), nullptr), REDIS_REPLY_STRING, val.c_str());
  }
  redisFree(ctx);
}

// ---- the ticker: the worst lateness of a 1 ms sleeper ----

template <class SleepUntil>
std::int64_t tick_until(const std::atomic<bool>& stop, SleepUntil sleep_until) {
  std::int64_t worst = 0;
  clk::time_point next = clk::now() + 1ms;
  while (!stop.load()) {
    sleep_until(next);
    const auto late = clk::now() - next;
    worst = std::max<std::int64_t>(worst, std::chrono::nanoseconds(late).count());
    next += 1ms;
    if (next < clk::now()) next = clk::now() + 1ms;  // a late tick does not start a burst
  }
  return worst;
}

struct result {
  double seconds = 0;
  std::int64_t worst_ns = 0;
};

result run_threads(const config& c) {
  std::atomic<bool> stop{false};
  std::int64_t worst = 0;
  std::thread ticker([&] {
    worst = tick_until(stop, [](clk::time_point t) { std::this_thread::sleep_until(t); });
  });
  const auto t0 = clk::now();
  std::vector<std::thread> ts;
  ts.reserve(c.clients);
  for (int i = 0; i < c.clients; ++i) {
    ts.emplace_back([&c, i] { client(c, i, [](auto f) { return f(); }); });
  }
  for (std::thread& t : ts) t.join();
  const auto t1 = clk::now();
  stop.store(true);
  ticker.join();
  return {std::chrono::duration<double>(t1 - t0).count(), worst};
}

result run_fibers(const config& c) {
  result res;
  weft::options o;
  o.workers = c.workers;
  weft::run(
      [&] {
        std::atomic<bool> stop{false};
        weft::wait_group ticked;
        ticked.add(1);
        weft::go([&] {
          res.worst_ns = tick_until(stop, [](clk::time_point t) { weft::sleep_until(t); });
          ticked.done();
        });
        const auto t0 = clk::now();
        weft::wait_group wg;
        wg.add(c.clients);
        for (int i = 0; i < c.clients; ++i) {
          weft::go([&c, &wg, i] {
            if (c.mode == "nonblock") {
              nonblock_client(c, i);
            } else if (c.mode == "blocking") {
              client(c, i, [](auto f) { return weft::blocking(f); });
            } else {
              client(c, i, [](auto f) { return f(); });
            }
            wg.done();
          });
        }
        wg.wait();
        res.seconds = std::chrono::duration<double>(clk::now() - t0).count();
        stop.store(true);
        ticked.wait();
      },
      o);
  return res;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: hiredis_bench MODE --port P [--clients N] [--ops N] [--workers N]\n"
               "                     [--server redis|postgres]\n"
               "modes: %s\n",
#ifdef WEFT_HIREDIS_HOOKS
               "hooks"
#else
               "blocking threads nonblock"
#endif
  );
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage();
  config c;
  c.mode = argv[1];
#ifdef WEFT_HIREDIS_HOOKS
  if (c.mode != "hooks") usage();
#else
  if (c.mode != "blocking" && c.mode != "threads" && c.mode != "nonblock") usage();
#endif
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--server") {
      c.server = argv[i + 1];
    } else if (k == "--port") {
      c.port = v;
    } else if (k == "--clients") {
      c.clients = v;
    } else if (k == "--ops") {
      c.ops = v;
    } else if (k == "--workers") {
      c.workers = static_cast<unsigned>(v);
    } else {
      usage();
    }
  }
  if (c.port <= 0) usage();
#ifdef WEFT_BENCH_LIBPQ
  const bool pq_ok = c.mode != "nonblock";
#else
  const bool pq_ok = false;
#endif
  if (c.server != "redis" && !(c.server == "postgres" && pq_ok)) usage();
  thread_sampler sampler;
  const result r = c.mode == "threads" ? run_threads(c) : run_fibers(c);
  const int peak = sampler.finish();
  const double ops = (c.server == "redis" ? 2.0 : 1.0) * c.clients * c.ops;
  std::printf(
      "{\"bench\":\"%s\",\"mode\":\"%s\",\"clients\":%d,\"ops\":%d,\"ops_per_s\":%.0f,"
      "\"threads\":%d,\"lateness_ms\":%.2f,\"seconds\":%.3f,\"failures\":%d}\n",
      c.server == "redis" ? "hiredis" : "libpq", c.mode.c_str(), c.clients, c.ops, ops / r.seconds,
      peak, r.worst_ns / 1e6, r.seconds, g_failures.load());
  return g_failures.load() == 0 ? 0 : 1;
}
