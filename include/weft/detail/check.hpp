#pragma once
// detail/check.hpp: executable invariants.
//
// WEFT_CHECK(cond, msg) is always on. It costs one predictable branch, so it
// belongs on paths where a broken invariant would otherwise corrupt memory
// silently (a fiber resumed twice, a processor with two holders). On failure
// it prints
//   weft: check failed at runtime/switch.cpp:123: <cond> (<msg>); fiber 7, worker 2
// and aborts. WEFT_DCHECK(cond, msg) is the same check, compiled only when
// WEFT_DEBUG_CHECKS is 1: debug builds and the asan and tsan presets (the
// presets define it; see CMakePresets.json). Use it where the check itself is
// not cheap enough for a release hot path (a walk over a queue, a lock).

namespace weft::detail {

// check_failed: print the report above and abort. Safe from any thread,
// including a signal handler's caller; does not allocate.
[[noreturn]] void check_failed(const char* file, int line, const char* cond,
                               const char* msg) noexcept;

}  // namespace weft::detail

#define WEFT_CHECK(cond, msg)                                       \
  do {                                                              \
    if (__builtin_expect(!(cond), 0)) {                             \
      ::weft::detail::check_failed(__FILE__, __LINE__, #cond, msg); \
    }                                                               \
  } while (0)

#ifndef WEFT_DEBUG_CHECKS
#ifdef NDEBUG
#define WEFT_DEBUG_CHECKS 0
#else
#define WEFT_DEBUG_CHECKS 1
#endif
#endif

#if WEFT_DEBUG_CHECKS
#define WEFT_DCHECK(cond, msg) WEFT_CHECK(cond, msg)
#else
#define WEFT_DCHECK(cond, msg) \
  do {                         \
    if (false && (cond)) {     \
    }                          \
  } while (0)
#endif
