// hooks_libs_test.cpp: unmodified blocking client libraries (hiredis's
// synchronous API, libcurl's easy API) called from hundreds of fibers with
// weft::hooks linked, against real servers the test starts on loopback.
//
// Each test holds the library calls inside the server (redis BLPOP; an HTTP
// server that answers only when told) until a ticker fiber has ticked:
// with one worker, a library call that blocked its thread would stop the
// ticker, and the test would hang (ctest's timeout) instead of passing.

#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "net_support.hpp"
#include "server_process.hpp"

namespace {

using namespace std::chrono_literals;

// ticker: a fiber that counts 1 ms ticks until stopped.
struct ticker {
  std::atomic<int> ticks{0};
  std::atomic<bool> stop{false};
  weft::wait_group done;
  ticker() {
    done.add(1);
    weft::go([this] {
      while (!stop.load()) {
        weft::sleep_for(1ms);
        ticks.fetch_add(1);
      }
      done.done();
    });
  }
  // wait_ticks: until n more ticks happened.
  void wait_ticks(int n) {
    const int until = ticks.load() + n;
    while (ticks.load() < until) weft::sleep_for(1ms);
  }
  void finish() {
    stop.store(true);
    done.wait();
  }
};

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

reply_ptr command(redisContext* c, const char* fmt, const std::string& a,
                  const std::string& b = "") {
  return reply_ptr(static_cast<redisReply*>(redisCommand(c, fmt, a.c_str(), b.c_str())));
}

long long blocked_clients(redisContext* c) {
  reply_ptr r(static_cast<redisReply*>(redisCommand(c, "INFO clients")));
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  const std::string info(r->str, r->len);
  const std::size_t at = info.find("blocked_clients:");
  return at == std::string::npos ? -1 : std::atoll(info.c_str() + at + 16);
}

}  // namespace

TEST_SUITE_BEGIN("hooks_libs");

TEST_CASE("hiredis: hundreds of fibers block in BLPOP and SET/GET while a ticker ticks") {
  const std::uint16_t port = test::free_port();
  test::server_process redis(
      {"/usr/bin/redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
       "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"},
      port);
  REQUIRE(redis.ready());
  const int clients = static_cast<int>(test::scaled(300, 3));
  constexpr int rounds = 20;
  nt::net_runs(
      [&](unsigned w) {
        ticker tick;
        std::atomic<int> ok{0};
        weft::wait_group wg;
        wg.add(clients);
        for (int i = 0; i < clients; ++i) {
          weft::go([&, i] {
            redisContext* c = redisConnect("127.0.0.1", port);
            if (c != nullptr && c->err == 0) {
              const std::string key = "weft:q:" + std::to_string(w) + ":" + std::to_string(i);
              reply_ptr r = command(c, "BLPOP %s 0", key);  // waits in the server
              bool good = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                          std::string(r->element[1]->str) == "go " + std::to_string(i);
              for (int k = 0; k < rounds && good; ++k) {
                const std::string v = std::to_string(i * 1000 + k);
                reply_ptr s = command(c, "SET %s %s", key, v);
                reply_ptr g = command(c, "GET %s", key);
                good = s && s->type == REDIS_REPLY_STATUS && g && g->type == REDIS_REPLY_STRING &&
                       std::string(g->str, g->len) == v;
              }
              if (good) ok.fetch_add(1);
            }
            if (c != nullptr) redisFree(c);
            wg.done();
          });
        }
        redisContext* admin = redisConnect("127.0.0.1", port);
        REQUIRE(admin != nullptr);
        REQUIRE(admin->err == 0);
        // Every client sits in BLPOP, inside hiredis's blocking read...
        while (blocked_clients(admin) < clients) weft::sleep_for(1ms);
        // ...and the ticker keeps ticking.
        tick.wait_ticks(20);
        for (int i = 0; i < clients; ++i) {
          const std::string key = "weft:q:" + std::to_string(w) + ":" + std::to_string(i);
          reply_ptr r = command(admin, "RPUSH %s %s", key, "go " + std::to_string(i));
          REQUIRE(r);
        }
        wg.wait();
        tick.finish();
        redisFree(admin);
        CHECK(ok.load() == clients);
      },
      {1, 2, 8});
}

namespace {

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// get: one GET with libcurl's easy API; the body, or "" on failure.
std::string get(CURL* h, const std::string& url) {
  std::string body;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  long code = 0;
  if (curl_easy_perform(h) != CURLE_OK) return "";
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  return code == 200 ? body : "";
}

// held_server: answers each request "held <path>" only once `release` is
// closed, counting the requests it holds.
void held_server(weft::net::listener* ln, std::atomic<int>* held, weft::chan<int> release) {
  for (;;) {
    weft::net::conn c;
    try {
      c = ln->accept();
    } catch (const std::system_error&) {
      return;  // closed
    }
    weft::go(
        [held, release](weft::net::conn peer) {
          std::string in;
          char buf[1024];
          while (in.find("\r\n\r\n") == std::string::npos) {
            const std::size_t n = peer.read(std::as_writable_bytes(std::span(buf)));
            if (n == 0) return;
            in.append(buf, n);
          }
          held->fetch_add(1);
          (void)release.recv();             // closed: go
          const std::string_view line(in);  // "GET /path HTTP/1.1"
          const std::size_t sp = line.find(' ') + 1;
          const std::string path(line.substr(sp, line.find(' ', sp) - sp));
          const std::string body = "held " + path;
          const std::string resp =
              "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
              "\r\nConnection: close\r\n\r\n" + body;
          peer.write(std::as_bytes(std::span(resp)));
        },
        std::move(c));
  }
}

}  // namespace

TEST_CASE("libcurl: hundreds of fibers wait in curl_easy_perform while a ticker ticks") {
  REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
  const std::uint16_t hello_port = test::free_port();
  const std::string hello_addr = "127.0.0.1:" + std::to_string(hello_port);
  test::server_process hello({WEFT_HTTP_HELLO, hello_addr}, hello_port);
  REQUIRE(hello.ready());
  const int clients = static_cast<int>(test::scaled(200, 2));
  nt::net_runs(
      [&](unsigned) {
        ticker tick;
        weft::net::listener ln = weft::net::listen("127.0.0.1:0");
        std::atomic<int> held{0};
        weft::chan<int> release;
        weft::go(held_server, &ln, &held, release);
        const std::string base = "http://" + ln.address();
        std::atomic<int> ok{0}, hello_ok{0};
        weft::wait_group wg;
        wg.add(clients);
        for (int i = 0; i < clients; ++i) {
          weft::go([&, i] {
            CURL* h = curl_easy_init();
            std::string path = "/";
            path += std::to_string(i);
            if (h != nullptr && get(h, base + path) == "held " + path) ok.fetch_add(1);
            // A few more, against examples/http_hello, on the same handle.
            int good = 0;
            for (int k = 0; k < 3 && h != nullptr; ++k) {
              good += get(h, "http://" + hello_addr + "/") == "Hello, World!";
            }
            if (good == 3) hello_ok.fetch_add(1);
            if (h != nullptr) curl_easy_cleanup(h);
            wg.done();
          });
        }
        // Every client waits inside curl_easy_perform for its response...
        while (held.load() < clients) weft::sleep_for(1ms);
        // ...and the ticker keeps ticking.
        tick.wait_ticks(20);
        release.close();
        wg.wait();
        tick.finish();
        ln.close();
        CHECK(ok.load() == clients);
        CHECK(hello_ok.load() == clients);
      },
      {1, 2, 8});
  curl_global_cleanup();
}

TEST_SUITE_END();
