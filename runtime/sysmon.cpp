// sysmon.cpp: the monitor thread. (Blocking-call handoff and CPU-hog
// detection arrive with the sysmon issue; for now it only exists.)

#include "runtime/sysmon.hpp"

#include "runtime/scheduler.hpp"

namespace weft::detail {

void sysmon_start(scheduler&) {}
void sysmon_stop(scheduler&) {}
std::uint64_t sysmon_handoffs(scheduler&) noexcept { return 0; }

}  // namespace weft::detail
