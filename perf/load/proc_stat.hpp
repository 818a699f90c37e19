#pragma once
// proc_stat.hpp: what weft-load reads about a process from /proc.

#include <sys/types.h>

#include <cstdint>

namespace load {

struct cpu_sample {
  bool ok = false;
  double cpu_s = 0;      // utime + stime of all its threads, live and exited (/proc/PID/stat)
  unsigned threads = 0;  // num_threads
  char state = '?';      // R, S, Z, ...
};

struct mem_sample {
  bool ok = false;
  std::uint64_t peak_rss_kb = 0;  // VmHWM
  std::uint64_t rss_kb = 0;       // VmRSS
};

// read_cpu / read_mem: pid 0 means this process.
cpu_sample read_cpu(pid_t pid);
mem_sample read_mem(pid_t pid);

}  // namespace load
