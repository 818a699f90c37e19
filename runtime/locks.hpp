#pragma once
// locks.hpp: os_mutex, the runtime's std::mutex with thread-safety
// annotations (weft/detail/thread_safety.hpp), and its scoped guards.
//
// Purpose: libstdc++'s std::mutex and std::lock_guard carry no
// annotations, so a field "guarded by mu_" behind a plain std::mutex
// cannot be checked by -Wthread-safety. os_mutex is std::mutex plus the
// annotations, at no cost (everything inlines to the same calls).
// os_lock is std::lock_guard's counterpart; os_unique_lock holds a
// std::unique_lock for a std::condition_variable wait (the analysis treats
// the lock as held across the wait, which is what the code after the wait
// relies on).
// Use these for the runtime's OS-thread locks (pools, queues, the final
// handshake), and detail::spinlock for the short fiber-side locks.

#include <mutex>

#include "weft/detail/thread_safety.hpp"

namespace weft::detail {

class WEFT_CAPABILITY("mutex") os_mutex {
 public:
  void lock() WEFT_ACQUIRE() { m_.lock(); }
  void unlock() WEFT_RELEASE() { m_.unlock(); }
  bool try_lock() WEFT_TRY_ACQUIRE(true) { return m_.try_lock(); }
  // native: the std::mutex, for os_unique_lock only.
  std::mutex& native() WEFT_RETURN_CAPABILITY(this) { return m_; }

 private:
  std::mutex m_;
};

// guard: a scoped hold of a lock (std::lock_guard), annotated.
template <class Lock>
class WEFT_SCOPED_CAPABILITY guard {
 public:
  explicit guard(Lock& l) WEFT_ACQUIRE(l) : l_(l) { l_.lock(); }
  ~guard() WEFT_RELEASE() { l_.unlock(); }
  guard(const guard&) = delete;
  guard& operator=(const guard&) = delete;

 private:
  Lock& l_;
};
using os_lock = guard<os_mutex>;

// os_unique_lock: a scoped hold that a std::condition_variable can wait on
// (cv.wait(lk.native(), ...)), and that can be released early.
class WEFT_SCOPED_CAPABILITY os_unique_lock {
 public:
  explicit os_unique_lock(os_mutex& m) WEFT_ACQUIRE(m) : ul_(m.native()) {}
  ~os_unique_lock() WEFT_RELEASE() {}
  void unlock() WEFT_RELEASE() { ul_.unlock(); }
  void lock() WEFT_ACQUIRE() { ul_.lock(); }
  std::unique_lock<std::mutex>& native() noexcept { return ul_; }

 private:
  std::unique_lock<std::mutex> ul_;
};

}  // namespace weft::detail
