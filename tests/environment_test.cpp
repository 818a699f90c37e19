// environment_test.cpp: the WEFT_* environment variables run() reads, and
// a run() that fails while it builds the runtime.

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>

#include "support.hpp"

TEST_SUITE_BEGIN("environment");

namespace {

// with_env: set `name` to `value` for the duration of a scope.
struct with_env {
  const char* name;
  with_env(const char* n, const char* value) : name(n) { ::setenv(n, value, 1); }
  ~with_env() { ::unsetenv(name); }
  with_env(const with_env&) = delete;
  with_env& operator=(const with_env&) = delete;
};

// refusal: what run() (with `workers`) throws as invalid_argument, or "".
std::string refusal(unsigned workers) {
  weft::options o;
  o.workers = workers;
  try {
    weft::run([] {}, o);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("run refuses a bad WEFT_* value, naming the variable and the value") {
  struct bad {
    const char* name;
    const char* value;
    unsigned workers;  // options.workers (0: WEFT_WORKERS decides)
  };
  const bad cases[] = {
      {"WEFT_WORKERS", "lots", 0},
      {"WEFT_WORKERS", "0", 0},
      {"WEFT_WORKERS", "3x", 0},
      {"WEFT_WORKERS", "1025", 0},
      {"WEFT_WORKERS", "-2", 0},
      {"WEFT_MAX_THREADS", "12abc", 2},
      {"WEFT_MAX_THREADS", "0", 2},
      {"WEFT_MAX_THREADS", "-5", 2},
      {"WEFT_MAX_THREADS", "1", 2},  // fewer threads than workers
      {"WEFT_MAX_THREADS", "99999999999999999999999", 2},
      {"WEFT_MAX_THREADS", " 12", 2},
      {"WEFT_SCHEDTRACE", "x", 1},
      {"WEFT_SCHEDTRACE", "-1", 1},
      {"WEFT_SCHEDTRACE", "10ms", 1},
      {"WEFT_SCHEDTRACE", "100000000000", 1},
      {"WEFT_SIGQUIT", "1", 1},
      {"WEFT_SIGQUIT", "DUMP", 1},
      {"WEFT_NETPOLL_WORKER_POLL", "2", 1},
      {"WEFT_NETPOLL_WORKER_POLL", "off", 1},
  };
  for (const bad& b : cases) {
    const std::string name = b.name, value = b.value;
    CAPTURE(name);
    CAPTURE(value);
    {
      const with_env env(b.name, b.value);
      const std::string what = refusal(b.workers);
      CHECK(what.rfind("weft::run: ", 0) == 0);
      CHECK(what.find(name + "=\"" + value + "\"") != std::string::npos);
    }
    // Nothing of the refused run is left (run() checks that no scheduler
    // outlived its runtime): the next one starts.
    weft::options o;
    o.workers = 1;
    CHECK(weft::run([] { return 5; }, o) == 5);
    test::check_teardown();
  }
}

TEST_CASE("run accepts each WEFT_* variable's documented values, and an empty value as unset") {
  weft::options o;
  o.workers = 2;
  {
    const with_env env("WEFT_MAX_THREADS", "2");  // exactly one thread per worker
    CHECK(weft::run([] { return 1; }, o) == 1);
  }
  {
    const with_env env("WEFT_SCHEDTRACE", "0");  // off
    CHECK(weft::run([] { return 2; }, o) == 2);
  }
  {
    const with_env env("WEFT_SIGQUIT", "dump");
    CHECK(weft::run([] { return 3; }, o) == 3);
  }
  for (const char* v : {"0", "1"}) {
    const with_env env("WEFT_NETPOLL_WORKER_POLL", v);
    CHECK(weft::run([] { return 4; }, o) == 4);
  }
  for (const char* name : {"WEFT_WORKERS", "WEFT_MAX_THREADS", "WEFT_SCHEDTRACE", "WEFT_SIGQUIT",
                           "WEFT_NETPOLL_WORKER_POLL"}) {
    CAPTURE(std::string(name));
    const with_env env(name, "");
    CHECK(weft::run([] { return 5; }) == 5);
  }
  test::check_teardown();
}

// A failure after the scheduler exists (here: no descriptor left for the
// poller's epoll set) undoes everything run() built.
TEST_CASE("a run whose start fails part way leaves nothing behind") {
  // UBSan checks the object of a virtual call with a pipe the first time
  // it meets its type, which it could not open below: meet the category
  // that the poller's system_error will report through now.
  CHECK(std::string(std::system_error(EMFILE, std::generic_category()).what()).size() > 0);
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  const int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // the lowest free descriptor
  REQUIRE(lowest >= 0);
  ::close(lowest);
  weft::options o;
  o.workers = 2;
  rlimit none = old;
  none.rlim_cur = static_cast<rlim_t>(lowest);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &none) == 0);
  bool refused = false;
  try {
    weft::run([] {}, o);
  } catch (const std::system_error&) {
    refused = true;
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  CHECK(refused);
  CHECK(weft::run([] { return 6; }, o) == 6);
  test::check_teardown();
}

TEST_SUITE_END();
