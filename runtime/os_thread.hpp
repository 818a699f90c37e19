#pragma once
// os_thread.hpp: how the runtime starts its own OS threads (workers, the
// netpoller, sysmon, blocking() pool threads and their spawner).
//
// Every such thread is started by start_os_thread, which counts it twice:
// once when it is created and once when its body begins. The two counts
// let a test know that no runtime thread is still on its way into its body
// (weft::detail::runtime_threads_entered). That matters where a test runs
// the process out of descriptors: UBSan checks the std::thread state object
// on the new thread before the body runs, the first time it meets the
// type, and that check opens a pipe; with no descriptor left it reports a
// bad vptr that is not there.
//
// O1  g_os_threads_started is incremented (relaxed) before the thread is
//     created, by the creating thread; g_os_threads_entered (release) as the
//     first act of the body, after std::thread's own code. Both only grow,
//     entered never passes started, and a failed creation counts as
//     entered. A reader that loads entered (acquire) and then started, and
//     finds them equal, knows no thread was created between its loads and
//     every thread created before them has begun its body.

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

namespace weft::detail {

inline std::atomic<std::uint64_t> g_os_threads_started{0};
inline std::atomic<std::uint64_t> g_os_threads_entered{0};

template <class F>
std::thread start_os_thread(F&& body) {
  g_os_threads_started.fetch_add(1, std::memory_order_relaxed);
  try {
    return std::thread([b = std::forward<F>(body)]() mutable {
      g_os_threads_entered.fetch_add(1, std::memory_order_release);  // O1
      b();
    });
  } catch (...) {
    g_os_threads_entered.fetch_add(1, std::memory_order_release);  // O1: never will
    throw;
  }
}

}  // namespace weft::detail
