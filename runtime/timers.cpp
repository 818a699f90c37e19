// timers.cpp: the timer service and clock (see timers.hpp).

#include "runtime/timers.hpp"

#include <time.h>

#include "runtime/netpoll_contract.hpp"

namespace weft::detail {

timer_service g_timers;

std::int64_t now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void timer_service::add_locked(timer* t) {
  heap_.push(t);
  earliest_.store(heap_.top()->when, std::memory_order_relaxed);
  if (t->when < sleep_until_) {  // T2
    sleep_until_ = t->when;
    netpoll_wake();
  }
}

bool timer_service::cancel_locked(timer* t) noexcept {
  if (t->index == timer::npos) return false;
  heap_.remove(t);
  earliest_.store(heap_.empty() ? INT64_MAX : heap_.top()->when, std::memory_order_relaxed);
  return true;
}

namespace {

// unlock_both: park_until's release when the caller passed `also`.
struct both_locks {
  spinlock* timers;
  spinlock* also;
};
void unlock_both(void* p) noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
  // `also` outlives the timers lock: the fiber cannot leave the frame
  // holding the both_locks before it takes `also` back.
  auto* l = static_cast<both_locks*>(p);
  spinlock* second = l->also;
  l->timers->unlock();
  second->unlock();
}

}  // namespace

// Not analysed: lock_ (and `also`, when given) are released by park on the
// next context, or by the catch blocks, which the analysis cannot pair.
void timer_service::park_until_impl(waiter& w, timer* t, wait_reason why, const void* obj,
                                    spinlock* also) WEFT_NO_THREAD_SAFETY_ANALYSIS {
  lock_.lock();
  try {
    add_locked(t);
  } catch (...) {  // no memory for the heap: t is not queued
    lock_.unlock();
    if (also != nullptr) also->unlock();
    throw;
  }
  try {
    if (also == nullptr) {
      park(w, lock_, why, obj, t->when);
    } else {
      both_locks locks{&lock_, also};
      park(w, unlock_both, &locks, why, obj, t->when);
    }
  } catch (...) {
    // Unwound at shutdown: the timer must not outlive the caller's frame.
    cancel(t);
    throw;
  }
}

std::int64_t timer_service::fire_due_locked(std::int64_t now) noexcept {
  while (!heap_.empty()) {
    timer* t = heap_.top();
    if (t->when > now) {
      earliest_.store(t->when, std::memory_order_relaxed);
      return t->when;
    }
    heap_.remove(t);
    if (t->period > 0) {
      // Re-arm from the scheduled time, skipping ticks already missed.
      t->when += t->period;
      if (t->when <= now) t->when = now + t->period - (now - t->when) % t->period;
      heap_.push(t);
    }
    t->fire(t);  // may free t if it was not re-armed (one-shot, runtime-owned)
  }
  earliest_.store(INT64_MAX, std::memory_order_relaxed);
  return INT64_MAX;
}

std::int64_t timer_service::fire_for_sleep(std::int64_t now, const std::size_t* batch_n) noexcept {
  lock_.lock();
  const std::int64_t deadline = fire_due_locked(now);
  sleep_until_ = deadline;  // T2
  undelivered_ = *batch_n;  // T3
  lock_.unlock();
  return deadline;
}

void timer_service::delivered() noexcept {
  lock_.lock();
  undelivered_ = 0;  // T3
  lock_.unlock();
}

std::size_t timer_service::pending() noexcept {
  lock_.lock();
  const std::size_t n = heap_.size() + undelivered_;
  lock_.unlock();
  return n;
}

std::size_t timer_service::live(std::size_t limit, bool with_undelivered) noexcept {
  lock_.lock();
  std::size_t n = with_undelivered ? undelivered_ : 0;  // T3
  for (std::size_t i = 0; i < heap_.size() && n < limit; ++i) {
    if (!timer_idle(heap_.at(i))) ++n;
  }
  lock_.unlock();
  return n;
}

void timer_service::begin_run() noexcept {
  lock_.lock();
  WEFT_CHECK(heap_.empty() && undelivered_ == 0, "a run starts with no timer queued");
  sleep_until_ = INT64_MAX;
  earliest_.store(INT64_MAX, std::memory_order_relaxed);
  lock_.unlock();
}

std::size_t timer_service::clear() noexcept {
  lock_.lock();
  const std::size_t disposed = heap_.clear();
  undelivered_ = 0;
  sleep_until_ = INT64_MAX;
  earliest_.store(INT64_MAX, std::memory_order_relaxed);
  lock_.unlock();
  return disposed;
}

}  // namespace weft::detail
