// A fiber state transition from the wrong state (fiber.hpp F4): readying a
// fiber that is running, as a double wake-up would. Built with
// WEFT_DEBUG_CHECKS only (debug, asan, tsan): the check is a WEFT_DCHECK.
#include <cstdio>
#include <weft/weft.hpp>

#include "runtime/scheduler.hpp"

int main() {
  weft::options o;
  o.workers = 1;
  weft::run([] { weft::detail::ready(weft::detail::current_fiber()); }, o);
  std::puts("not reached");
}
