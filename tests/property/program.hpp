#pragma once
// program.hpp: random CSP programs for the property tester (harness.cpp).
//
// A seed determines a program: worker count, how many run() calls, how it
// ends, channels and their capacities, fibers and plain threads that send,
// receive and select (with and without default, with after() timeouts),
// close channels early, sleep, yield, call blocking(), take a weft::mutex,
// pass values through a mutex + condition_variable mailbox, and destructors
// that act while a fiber is unwound at shutdown. The seed also fixes each
// participant's choices; the interleaving is the scheduler's (and
// WEFT_PERTURB's).
//
// Endings
//   clean     every participant finishes; nothing is left to unwind.
//   abandon   main returns while fibers are parked and plain threads are
//             still using the channels and the mutex; shutdown unwinds the
//             fibers (their destructors act), the threads are stopped after
//             run() returns.
//   deadlock  after the traffic, every fiber blocks for good (main too, on
//             a channel, holding a mutex that unwinding fibers then take):
//             run() must throw deadlock_error, the destructors must finish.
//
// Invariants checked (a failure is one line each):
//   * every value sent is received exactly once, or is still buffered when
//     the program ends, or its send failed on a closed channel (and it is
//     never received); a send interrupted by shutdown may or may not have
//     been delivered, but never twice;
//   * values from one sender arrive at one receiver in the order sent;
//   * the mutex excludes (never two holders) and counts every increment;
//   * run() returns, or throws deadlock_error, as the ending says;
//   * teardown leaves no fiber record, stack, timer or thread behind, and a
//     clean program leaves nothing to unwind.

#include <cstdint>
#include <string>

namespace proptest {

enum class ending { clean, abandon, deadlock };

// Features a run may leave out (--without), to tell which one a failure
// needs.
enum feature : std::uint32_t {
  f_abandon = 1u << 0,       // the abandon ending
  f_deadlock = 1u << 1,      // the deadlock ending
  f_threads = 1u << 2,       // plain-thread senders and receivers
  f_mutex_thread = 1u << 3,  // a plain thread hammering the mutex
  f_bridge = 1u << 4,        // a thread outliving the runs
  f_guards = 1u << 5,        // destructors acting at unwinding
  f_guard_go = 1u << 6,      // ...that start a fiber
  f_guard_sleep = 1u << 7,   // ...that sleep or yield
  f_guard_lock = 1u << 8,    // ...that take a mutex held by another unwinding fiber
  f_blocking = 1u << 9,      // weft::blocking calls
  f_mailbox = 1u << 10,      // the mutex + condition_variable mailbox
  f_early_close = 1u << 11,  // a channel closed while senders send
  f_timeouts = 1u << 12,     // after() in selects
  f_repeat = 1u << 13,       // more than one run() per program
};
// parse_features: "guard-go,bridge" -> bits; 0 and an error on a bad name.
std::uint32_t parse_features(const std::string& list, std::string* error);

struct spec {
  std::uint64_t seed = 0;
  unsigned workers = 1;
  unsigned runs = 1;  // run() calls in the process
  ending end = ending::clean;
  unsigned nchan = 1;        // 1..4
  std::size_t cap[4] = {};   // capacities
  unsigned senders = 1;      // sender fibers
  unsigned receivers = 1;    // receiver fibers
  unsigned per_sender = 10;  // values each sender sends
  unsigned thread_senders = 0;
  unsigned thread_receivers = 0;
  bool early_close = false;   // one channel closed while senders still send
  bool mailbox = false;       // values also through mutex + condition_variable
  bool mutex_thread = false;  // a plain thread hammering the mutex
  bool bridge = false;        // a thread outliving the runs, polling a request channel
  bool guards = false;        // destructors that act while unwinding
  bool blocking = false;      // fibers call weft::blocking
  bool timer_storm = false;   // fibers looping on selects with short after() timeouts
  std::uint32_t without = 0;  // features left out (also inside guards and selects)
};

spec make_spec(std::uint64_t seed, std::uint32_t without = 0);
std::string describe(const spec& s);

// run_program: run the program in this process; returns the failures found
// (empty: all invariants held). May of course crash or hang instead: the
// harness runs it in a child process.
std::string run_program(const spec& s);

}  // namespace proptest
