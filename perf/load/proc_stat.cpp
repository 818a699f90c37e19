// proc_stat.cpp: /proc/PID/stat and /proc/PID/status parsing.
#include "proc_stat.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace load {
namespace {

std::string proc_path(pid_t pid, const char* file) {
  return pid == 0 ? std::string("/proc/self/") + file : "/proc/" + std::to_string(pid) + "/" + file;
}

}  // namespace

cpu_sample read_cpu(pid_t pid) {
  cpu_sample s;
  std::ifstream in(proc_path(pid, "stat"));
  std::string line;
  if (!std::getline(in, line)) return s;
  // The command name (field 2) may contain spaces and parentheses: fields
  // resume after the last ')'. Field 3 is the state, 14 utime, 15 stime, 20 threads.
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 1));
  std::string field[18];
  for (auto& f : field)
    if (!(rest >> f)) return s;
  static const double tick = double(sysconf(_SC_CLK_TCK));
  s.state = field[0][0];
  s.cpu_s = (std::stod(field[11]) + std::stod(field[12])) / tick;
  s.threads = static_cast<unsigned>(std::stoul(field[17]));
  s.ok = true;
  return s;
}

mem_sample read_mem(pid_t pid) {
  mem_sample m;
  std::ifstream in(proc_path(pid, "status"));
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "VmHWM: %llu kB", &kb) == 1) m.peak_rss_kb = kb, m.ok = true;
    if (std::sscanf(line.c_str(), "VmRSS: %llu kB", &kb) == 1) m.rss_kb = kb;
  }
  return m;
}

}  // namespace load
