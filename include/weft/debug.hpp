#pragma once
// weft/debug.hpp: runtime statistics, fiber dumps, deadlock reports.

#include <cstdint>
#include <iosfwd>
#include <stdexcept>

#include "weft/detail/cxx20.hpp"

namespace weft {

// runtime_stats: counters for the current run (reset when run starts; all
// zero outside run). Gathered without stopping the world, so fields read at
// slightly different moments may disagree by a few.
struct runtime_stats {
  std::uint64_t fibers_alive;      // started (main included) and not finished
  std::uint64_t fibers_runnable;   // queued to run
  std::uint64_t fibers_parked;     // waiting in a channel, lock, timer or poller
  std::uint64_t fibers_started;    // since run started, main included
  std::uint64_t workers;           // processors (options::workers)
  std::uint64_t threads;           // OS threads the runtime created and still has:
                                   // workers (spares included), the poller and sysmon
  std::uint64_t idle_threads;      // workers parked with nothing to do (spares)
  std::uint64_t context_switches;  // fiber switches
  std::uint64_t steals;            // successful thefts from another processor
  std::uint64_t handoffs;          // sysmon hand-offs: processors taken from blocking
                                   // calls, and queues moved off hogging fibers
  std::uint64_t netpoll_wakeups;   // fibers woken by the netpoller
};

// stats: a snapshot of the counters. Callable from anywhere.
runtime_stats stats() noexcept;

// dump_fibers: write one entry per live fiber (id, state, wait reason, how
// long it has waited, where it was started). Callable from anywhere.
void dump_fibers(std::ostream& out);

// deadlock_error: thrown by run() when every fiber is blocked and nothing
// (timer, descriptor, blocking call, foreign thread) can ever wake one.
struct deadlock_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace weft
