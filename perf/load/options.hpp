#pragma once
// options.hpp: weft-load's command line and the host checks it needs before
// opening thousands of connections (descriptor limit, local port range).

#include <sys/types.h>

#include <string>

#include "client.hpp"

namespace load {

enum class progress_mode { automatic, tty, plain, none };

struct options {
  std::string target = "127.0.0.1:7000";
  config client;
  double duration_s = 10;
  double warmup_s = 2;
  double connect_deadline_s = 60;  // the whole connect phase
  double drain_timeout_s = 5;
  pid_t server_pid = 0;
  std::string label;
  bool json = false;
  progress_mode progress = progress_mode::automatic;
};

// parse_options: exits with usage on stderr (status 2) on a bad command line.
options parse_options(int argc, char** argv);

// resolve: fills cfg.addr from "host:port", "[v6]:port" or ":port"; false and a
// message on stderr when it cannot.
bool resolve(const std::string& target, config& cfg);

// raise_fd_limit: soft limit to the hard limit, and the hard limit too when we
// may (root); false and a message when `needed` descriptors are not available.
bool raise_fd_limit(unsigned needed);

// check_port_range: false and a message when the local port range holds fewer
// ports than `conns` connections to one address need.
bool check_port_range(unsigned conns);

}  // namespace load
