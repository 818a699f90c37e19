#pragma once
// sysmon.hpp: the monitor thread (sysmon.cpp).

#include <cstdint>

namespace weft::detail {

struct scheduler;

void sysmon_start(scheduler& s);
void sysmon_stop(scheduler& s);
std::uint64_t sysmon_handoffs(scheduler& s) noexcept;

}  // namespace weft::detail
