#pragma once
// deadlock.hpp: the per-run state of the deadlock detector (deadlock.cpp).
//
// One instance lives in each scheduler (scheduler::dl), so it is created
// and freed with its run; only deadlock.cpp and run() (runtime.cpp) touch
// it. The rule it serves, and the invariants D1-D2, are at the head of
// deadlock.cpp.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/locks.hpp"

namespace weft::detail {

struct deadlock_state {
  // Parties (deadlock.cpp, "Foreign parties"). Written by run()'s thread
  // in parties_begin before any plain thread can enter (accepting is
  // stored after it, runtime.cpp L1), then read-only except party_tids.
  long run_caller_tid = 0;          // the thread in run(); never a party
  std::vector<long> baseline_tids;  // threads alive when the runtime started (sorted)
  std::uint64_t run_epoch = 0;      // distinguishes runs for the per-thread party flag
  os_mutex party_mu;
  std::vector<long> party_tids WEFT_GUARDED_BY(party_mu);  // threads that called into weft

  // Confirmation (D1): sysmon's alone.
  std::uint64_t signature = 0;
  std::int64_t since = 0;

  // The verdict (D2): written once by sysmon before it wakes run()
  // (release on scheduler::all_idle); read by run() after its acquire.
  bool deadlocked = false;
  std::string message;
};

}  // namespace weft::detail
