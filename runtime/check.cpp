// check.cpp: the failure path of WEFT_CHECK / WEFT_DCHECK (weft/detail/check.hpp).

#include "weft/detail/check.hpp"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "runtime/fiber.hpp"
#include "runtime/machine.hpp"
#include "runtime/processor.hpp"
#include "runtime/sys.hpp"
#include "weft/detail/perturb.hpp"

namespace weft::detail {

namespace {

// appendf: printf into buf at n, keeping n within the buffer.
__attribute__((format(printf, 4, 5))) void appendf(char* buf, std::size_t cap, int& n,
                                                   const char* fmt, ...) noexcept {
  if (n < 0 || static_cast<std::size_t>(n) >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  n += std::vsnprintf(buf + n, cap - static_cast<std::size_t>(n), fmt, ap);
  va_end(ap);
}

}  // namespace

void check_failed(const char* file, int line, const char* cond, const char* msg) noexcept {
  // Formatted into a stack buffer and written with one write(2): no
  // allocation, and the line is not interleaved with other threads' output.
  char buf[1024];
  const std::size_t cap = sizeof buf;
  int n = 0;
  appendf(buf, cap, n, "weft: check failed at %s:%d: %s", file, line, cond);
  if (msg != nullptr && *msg != '\0') appendf(buf, cap, n, " (%s)", msg);
  if (machine* m = current_m()) {
    if (m->curg != nullptr) {
      appendf(buf, cap, n, "; fiber %llu", static_cast<unsigned long long>(m->curg->get_id()));
    } else {
      appendf(buf, cap, n, "; on the scheduler context");
    }
    appendf(buf, cap, n, ", machine %u", m->id);
    if (m->p != nullptr) appendf(buf, cap, n, ", processor %u", m->p->index);
  } else {
    appendf(buf, cap, n, "; not a runtime thread (tid %ld)", static_cast<long>(::gettid()));
  }
  if (const unsigned long long seed = perturb_seed()) {
    appendf(buf, cap, n, "; schedule perturbation seed %llu (replay: WEFT_PERTURB=%llu)", seed,
            seed);
  }
  if (n < 0 || static_cast<std::size_t>(n) >= cap - 1) n = static_cast<int>(cap) - 2;
  buf[n++] = '\n';
  [[maybe_unused]] const ssize_t w = sys_write(STDERR_FILENO, buf, static_cast<std::size_t>(n));
  std::abort();
}

const char* fiber_state_name(fiber_state s) noexcept {
  switch (s) {
    case fiber_state::free:
      return "free";
    case fiber_state::runnable:
      return "runnable";
    case fiber_state::running:
      return "running";
    case fiber_state::parked:
      return "parked";
    case fiber_state::dead:
      return "dead";
  }
  return "?";
}

void transition_failed(const fiber* f, fiber_state prior, fiber_state from, fiber_state to,
                       const char* file, int line) noexcept {
  char msg[256];
  std::snprintf(msg, sizeof msg, "fiber %llu (started at %s:%u) went %s -> %s, expected %s -> %s",
                static_cast<unsigned long long>(f->get_id()), f->get_file(), f->get_line(),
                fiber_state_name(prior), fiber_state_name(to), fiber_state_name(from),
                fiber_state_name(to));
  check_failed(file, line, "legal fiber state transition (fiber.hpp F4)", msg);
}

}  // namespace weft::detail
