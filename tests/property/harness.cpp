// harness.cpp: the property tester's driver: runs random CSP programs
// (program.hpp), each in a child process, and reports any that break an
// invariant, crash, abort or hang, with the command that replays it.
//
//   weft-property [--seeds N] [--first-seed S]   seeds S..S+N-1 (default 1..20)
//   weft-property --minutes M                    random seeds for M minutes (soak)
//   weft-property --seed S [--inline]            one program (--inline: in this process)
//   --perturb        run each program under WEFT_PERTURB (seed derived from the program's)
//   --timeout SEC    per program (default 120); a hung program gets SIGQUIT (a fiber
//                    dump, WEFT_SIGQUIT=dump) and then SIGKILL
//   --without LIST   leave features out (program.hpp `feature`), e.g. guard-go,bridge:
//                    which failures remain tells which feature a bug needs
//
// The parent never starts a runtime or a thread, so fork() is safe; each
// child runs one program and exits 0 only if every invariant held.

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "program.hpp"

namespace {

struct options {
  std::uint64_t first = 1;
  std::uint64_t count = 20;
  double minutes = 0;
  bool one = false;
  bool inline_run = false;
  bool perturb = false;
  int timeout_s = 120;
  std::uint32_t without = 0;
  std::string without_text;
};

std::uint64_t perturb_seed_for(std::uint64_t seed) { return seed * 1000003 + 7; }

std::string replay_line(const char* self, std::uint64_t seed, const options& o) {
  std::string s = "  replay: ";
  if (o.perturb) s += "WEFT_PERTURB=" + std::to_string(perturb_seed_for(seed)) + " ";
  s += std::string(self) + " --seed " + std::to_string(seed) + " --inline";
  if (o.without != 0) s += " --without " + o.without_text;
  return s;
}

void sleep_ms(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  ::nanosleep(&ts, nullptr);
}

std::string read_all(int fd) {
  std::string out;
  ::lseek(fd, 0, SEEK_SET);
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

int run_inline(std::uint64_t seed, std::uint32_t without) {
  const proptest::spec sp = proptest::make_spec(seed, without);
  std::fprintf(stderr, "property: seed %llu: %s\n", static_cast<unsigned long long>(seed),
               proptest::describe(sp).c_str());
  const std::string failures = proptest::run_program(sp);
  if (!failures.empty()) {
    std::fprintf(stderr, "%s", failures.c_str());
    return 1;
  }
  return 0;
}

// run_child: one program in a child process. Returns "" if it passed, else
// what went wrong; `output` gets what the child printed.
std::string run_child(std::uint64_t seed, const options& o, std::string& output) {
  const int fd = ::memfd_create("weft-property", 0);
  if (fd < 0) return "memfd_create failed";
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return "fork failed";
  }
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setenv("WEFT_SIGQUIT", "dump", 1);
    if (o.perturb) {
      ::setenv("WEFT_PERTURB", std::to_string(perturb_seed_for(seed)).c_str(), 1);
    } else {
      ::unsetenv("WEFT_PERTURB");
    }
    const int rc = run_inline(seed, o.without);
    std::fflush(nullptr);
    ::_exit(rc);
  }
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (!timed_out &&
        std::chrono::steady_clock::now() - start > std::chrono::seconds(o.timeout_s)) {
      timed_out = true;
      ::kill(pid, SIGQUIT);  // the runtime prints a fiber dump
      sleep_ms(3000);
      ::kill(pid, SIGKILL);
    }
    sleep_ms(2);
  }
  output = read_all(fd);
  ::close(fd);
  if (timed_out) return "hung (no end after " + std::to_string(o.timeout_s) + " s)";
  if (WIFSIGNALED(status)) {
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  if (WEXITSTATUS(status) != 0) return "invariant broken";
  return "";
}

bool parse(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--seeds" && (v = next())) {
      o.count = std::strtoull(v, nullptr, 10);
    } else if (a == "--first-seed" && (v = next())) {
      o.first = std::strtoull(v, nullptr, 10);
    } else if (a == "--seed" && (v = next())) {
      o.first = std::strtoull(v, nullptr, 10);
      o.count = 1;
      o.one = true;
    } else if (a == "--minutes" && (v = next())) {
      o.minutes = std::strtod(v, nullptr);
    } else if (a == "--timeout" && (v = next())) {
      o.timeout_s = std::atoi(v);
    } else if (a == "--perturb") {
      o.perturb = true;
    } else if (a == "--inline") {
      o.inline_run = true;
    } else if (a == "--without" && (v = next())) {
      std::string error;
      o.without_text = v;
      o.without = proptest::parse_features(v, &error);
      if (!error.empty()) {
        std::fprintf(stderr, "weft-property: %s\n", error.c_str());
        return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (!parse(argc, argv, o)) {
    std::fputs(
        "usage: weft-property [--seeds N] [--first-seed S] | --minutes M | --seed S [--inline]"
        " [--perturb] [--timeout SEC] [--without LIST]\n",
        stderr);
    return 2;
  }
  if (o.inline_run) return run_inline(o.first, o.without);

  const auto start = std::chrono::steady_clock::now();
  std::uint64_t seed = o.first;
  if (o.minutes > 0) {
    seed = static_cast<std::uint64_t>(start.time_since_epoch().count()) % 1000000000ull + 1;
  }
  std::uint64_t ran = 0;
  std::vector<std::uint64_t> failed;
  for (;; ++seed) {
    if (o.minutes > 0) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed >= o.minutes * 60) break;
    } else if (ran == o.count) {
      break;
    }
    std::string output;
    const std::string why = run_child(seed, o, output);
    ++ran;
    if (why.empty() && !o.one) continue;
    if (!why.empty()) failed.push_back(seed);
    std::printf("property: %s seed %llu: %s\n%s\n", why.empty() ? "ok" : "FAIL",
                static_cast<unsigned long long>(seed), why.empty() ? "passed" : why.c_str(),
                replay_line(argv[0], seed, o).c_str());
    std::fputs(output.c_str(), stdout);
    std::fflush(stdout);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("property: %llu programs%s in %.1f s, %zu failed",
              static_cast<unsigned long long>(ran), o.perturb ? " (perturbed)" : "", secs,
              failed.size());
  for (std::size_t i = 0; i < failed.size(); ++i) {
    std::printf("%s%llu", i == 0 ? ": seeds " : ", ", static_cast<unsigned long long>(failed[i]));
  }
  std::printf("\n");
  return failed.empty() ? 0 : 1;
}
