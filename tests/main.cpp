// main.cpp: doctest's main for the test binaries, plus a watchdog.
//
// A test that hangs is killed by ctest at its TIMEOUT, and ctest's SIGKILL
// leaves nothing to read: a CI log then says only "Timeout". The watchdog
// fires first (WEFT_TEST_WATCHDOG seconds after a test case starts, 270 by
// default, under the suite's 300 s TIMEOUT). It prints the test's name,
// then gdb (from the package list) prints every thread's backtrace, and
// the process exits with status 3: the hang is a failure with its state in
// the log. (Not weft's fiber list: tools/weft-gdb.py needs the debug
// build's type information.)
//
// Design: an alarm(), not a thread. A thread would make every test process
// multi-threaded before its first run(), and ThreadSanitizer refuses to
// start threads in a child forked from a multi-threaded process (the fork
// tests fork between runs). The handler uses only async-signal-safe calls:
// write, fork, execve, waitpid, _exit. A forked child inherits the handler
// but not the alarm; a child that arms its own gets the default action.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace {

unsigned g_secs = 270;  // 0: no watchdog
pid_t g_pid = 0;        // the test process (not a forked child)
// Written by the doctest thread with the alarm off; read by the handler.
char g_name[512];
char g_pid_arg[24];

void say(const char* s) {
  std::size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void on_alarm(int sig) {
  if (::getpid() != g_pid) {  // a forked child's own alarm
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  say("\nwatchdog: test case \"");
  say(g_name);
  say("\" is still running: every thread's stack follows\n");
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    const char* argv[] = {"gdb",  "-p", g_pid_arg, "-batch", "-nx", "-ex", "thread apply all bt 16",
                          nullptr};
    ::execve("/usr/bin/gdb", const_cast<char* const*>(argv), environ);
    say("watchdog: /usr/bin/gdb could not be started\n");
    ::_exit(127);
  }
  if (child > 0) {
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  }
  // _exit, not abort: doctest's SIGABRT handler allocates, which the
  // sanitizers report as a second failure that hides this one.
  say("watchdog: test case failed: it hung\n");
  ::_exit(3);
}

struct watchdog_listener : doctest::IReporter {
  explicit watchdog_listener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData& tc) override {
    if (g_secs == 0) return;
    ::alarm(0);
    std::snprintf(g_name, sizeof g_name, "%s", tc.m_name);
    ::alarm(g_secs);
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    if (g_secs != 0) ::alarm(0);
  }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

REGISTER_LISTENER("weft-watchdog", 1, watchdog_listener);

}  // namespace

int main(int argc, char** argv) {
  if (const char* e = std::getenv("WEFT_TEST_WATCHDOG")) {
    g_secs = static_cast<unsigned>(std::strtoul(e, nullptr, 10));
  }
  if (g_secs != 0) {
    g_pid = ::getpid();
    std::snprintf(g_pid_arg, sizeof g_pid_arg, "%d", static_cast<int>(g_pid));
    ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);  // gdb, our child, may attach (Yama)
    struct sigaction sa {};
    sa.sa_handler = &on_alarm;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
