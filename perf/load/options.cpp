// options.cpp: weft-load's command line and host checks.
#include "options.hpp"

#include <netdb.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace load {
namespace {

constexpr const char* kUsage =
    "usage: weft-load [HOST:PORT] [options]     (default 127.0.0.1:7000)\n"
    "  Opens C connections and runs a verified 64-byte echo ping-pong on each.\n"
    "  -c, --conns N           connections (default 10000)\n"
    "  -d, --duration S        measured seconds (default 10)\n"
    "  -w, --warmup S          ping-pong seconds before measuring (default 2)\n"
    "  -t, --threads N         load threads (default 1)\n"
    "  -p, --pid PID           the server: report its CPU per message and peak RSS\n"
    "      --connect-rate R    connection attempts per second (default 20000)\n"
    "      --max-pending N     per thread, opening at once (default 256)\n"
    "      --connect-retries N further attempts after a failed one (default 5)\n"
    "      --connect-timeout S one attempt, until its first echo (default 10)\n"
    "      --connect-deadline S  the whole connect phase (default 60)\n"
    "      --label NAME        the server's name in progress lines and JSON\n"
    "      --json              print one JSON line on stdout\n"
    "      --progress MODE     auto (default: updating line if stderr is a terminal),\n"
    "                          tty, plain (one line per milestone) or none\n";

[[noreturn]] void usage(const char* msg, const char* arg) {
  if (msg) std::fprintf(stderr, "weft-load: %s%s\n", msg, arg ? arg : "");
  std::fputs(kUsage, stderr);
  std::exit(2);
}

double number(const char* flag, const char* s, double lo, double hi) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= lo && v <= hi)) usage("bad value for ", flag);
  return v;
}

progress_mode parse_progress(const char* s) {
  if (!std::strcmp(s, "auto")) return progress_mode::automatic;
  if (!std::strcmp(s, "tty")) return progress_mode::tty;
  if (!std::strcmp(s, "plain")) return progress_mode::plain;
  if (!std::strcmp(s, "none")) return progress_mode::none;
  usage("bad --progress: ", s);
}

}  // namespace

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    auto is = [&](const char* s, const char* l) {
      return (s && !std::strcmp(a, s)) || !std::strcmp(a, l);
    };
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage("missing value after ", a);
      return argv[++i];
    };
    if (is("-h", "--help"))
      usage(nullptr, nullptr);
    else if (is("-c", "--conns"))
      o.client.conns = unsigned(number(a, val(), 1, 1e7));
    else if (is("-d", "--duration"))
      o.duration_s = number(a, val(), 0.1, 1e6);
    else if (is("-w", "--warmup"))
      o.warmup_s = number(a, val(), 0, 1e6);
    else if (is("-t", "--threads"))
      o.client.threads = unsigned(number(a, val(), 1, 256));
    else if (is("-p", "--pid"))
      o.server_pid = pid_t(number(a, val(), 1, 1e9));
    else if (is(nullptr, "--connect-rate"))
      o.client.connect_rate = number(a, val(), 1, 1e9);
    else if (is(nullptr, "--max-pending"))
      o.client.max_pending = unsigned(number(a, val(), 1, 1e7));
    else if (is(nullptr, "--connect-retries"))
      o.client.connect_retries = unsigned(number(a, val(), 0, 8));
    else if (is(nullptr, "--connect-timeout"))
      o.client.connect_timeout_s = number(a, val(), 0.01, 1e6);
    else if (is(nullptr, "--connect-deadline"))
      o.connect_deadline_s = number(a, val(), 0.01, 1e6);
    else if (is(nullptr, "--label"))
      o.label = val();
    else if (is(nullptr, "--json"))
      o.json = true;
    else if (is(nullptr, "--progress"))
      o.progress = parse_progress(val());
    else if (a[0] == '-')
      usage("unknown option ", a);
    else
      o.target = a;
  }
  if (o.client.threads > o.client.conns) o.client.threads = o.client.conns;
  return o;
}

bool resolve(const std::string& target, config& cfg) {
  auto colon = target.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "weft-load: target '%s' is not HOST:PORT\n", target.c_str());
    return false;
  }
  std::string host = target.substr(0, colon), port = target.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "127.0.0.1";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    std::fprintf(stderr, "weft-load: cannot resolve '%s': %s\n", target.c_str(), gai_strerror(rc));
    return false;
  }
  std::memcpy(&cfg.addr, res->ai_addr, res->ai_addrlen);
  cfg.addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

bool raise_fd_limit(unsigned needed) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed) {
    rlimit want{needed, needed};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) return true;
    std::fprintf(stderr,
                 "weft-load: need %u descriptors but the hard limit is %llu; raise it "
                 "(ulimit -Hn as root, or run under tools/weft c10k)\n",
                 needed, static_cast<unsigned long long>(rl.rlim_max));
    return false;
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  return true;
}

bool check_port_range(unsigned conns) {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned lo = 0, hi = 0;
  if (!(in >> lo >> hi)) return true;  // not Linux-like; let connect() tell
  unsigned ports = hi >= lo ? hi - lo + 1 : 0;
  if (ports >= conns) return true;
  std::fprintf(stderr,
               "weft-load: the local port range %u-%u has %u ports, fewer than %u connections "
               "to one address need; widen it: sysctl -w net.ipv4.ip_local_port_range=\"1024 "
               "65000\"\n",
               lo, hi, ports, conns);
  return false;
}

}  // namespace load
