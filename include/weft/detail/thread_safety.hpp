#pragma once
// detail/thread_safety.hpp: clang's thread-safety annotations, as macros.
//
// Purpose: let the compiler check the comments that say "guarded by lk_".
// A field declared WEFT_GUARDED_BY(lk_) may be touched only where the
// analysis can see lk_ held: after lk_.lock() in the same function, inside
// a scoped guard, or in a function declared WEFT_REQUIRES(lk_). The clang
// presets (asan, tsan) build weft's own targets with -Wthread-safety and
// -Werror (cmake/project-options.cmake); gcc ignores the macros.
//
// Design: the analysis is per function and knows nothing of fibers. Two
// weft patterns it cannot follow, and how they are written:
//   - the park protocol (detail/park.hpp): a fiber takes an object's lock
//     and park() releases it on the next fiber's stack. park() and its
//     kin are declared WEFT_RELEASE(lk), which is what the caller sees.
//   - a lock taken in one function and released in another across a
//     callback (the timers' park_until, the final-phase handshake): the
//     function that does it is WEFT_NO_THREAD_SAFETY_ANALYSIS, with a
//     comment saying which lock crosses the boundary and why.
// Rejected: libc++'s annotated std::mutex (weft builds against libstdc++,
// whose std::mutex carries no annotations); hence runtime/locks.hpp wraps
// std::mutex in an annotated os_mutex for the runtime's own locks.

#if defined(__clang__)
#define WEFT_TSA_(x) __attribute__((x))
#else
#define WEFT_TSA_(x)
#endif

#define WEFT_CAPABILITY(name) WEFT_TSA_(capability(name))
#define WEFT_SCOPED_CAPABILITY WEFT_TSA_(scoped_lockable)
#define WEFT_GUARDED_BY(m) WEFT_TSA_(guarded_by(m))
#define WEFT_PT_GUARDED_BY(m) WEFT_TSA_(pt_guarded_by(m))
#define WEFT_REQUIRES(...) WEFT_TSA_(requires_capability(__VA_ARGS__))
#define WEFT_ACQUIRE(...) WEFT_TSA_(acquire_capability(__VA_ARGS__))
#define WEFT_RELEASE(...) WEFT_TSA_(release_capability(__VA_ARGS__))
#define WEFT_TRY_ACQUIRE(...) WEFT_TSA_(try_acquire_capability(__VA_ARGS__))
#define WEFT_EXCLUDES(...) WEFT_TSA_(locks_excluded(__VA_ARGS__))
#define WEFT_ASSERT_HELD(...) WEFT_TSA_(assert_capability(__VA_ARGS__))
#define WEFT_RETURN_CAPABILITY(x) WEFT_TSA_(lock_returned(x))
#define WEFT_NO_THREAD_SAFETY_ANALYSIS WEFT_TSA_(no_thread_safety_analysis)
