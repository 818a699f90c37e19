#pragma once
// poller.hpp: the netpoller thread. It asks the timer service
// (runtime/timers.hpp) for the earliest deadline, sleeps in epoll_pwait2
// until then, has the service fire what is due, wakes fibers parked on
// descriptors, and injects every fiber it readied in one batch. The
// runtime reaches it through runtime/netpoll_contract.hpp.
//
// Design
//   The timer service wakes the thread through netpoll_wake when a timer
//   is added earlier than the deadline it sleeps to (timers.hpp T2): an
//   eventfd write, which wake_pending_ keeps to one per sleep.
//   Timer wakeups go to the front of the global queue, I/O wakeups to its
//   back; between the firing and the injection the batch is counted as
//   undelivered by the service (timers.hpp T3).
//   Descriptors (netpoll.cpp, "Who polls"): while any worker runs, the
//   thread rests on the eventfd alone (ppoll, ns timeout) and the workers
//   poll the epoll set themselves; it waits on the epoll set only when
//   every processor is idle (the last worker to idle wakes it), and polls
//   it once per netpoll_rest_tick if the workers stopped polling. Events
//   tagged 0 are the eventfd; any other tag is a descriptor record's.

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <thread>

namespace weft::detail {

class poller {
 public:
  // start: create the epoll set and the eventfd and start the thread
  // (netpoll_thread_start).
  void start(unsigned nprocs_total, bool worker_poll);
  // stop: stop and join the thread. Timers stay queued (shutdown unwinding
  // cancels the ones that live on fiber stacks).
  void stop() noexcept;
  // destroy: close the descriptors (after stop, or a failed start).
  void destroy() noexcept;
  // wake: make the thread re-evaluate its deadline now.
  void wake() noexcept;
  // thread_tid: the thread's OS id (0 until it has started).
  long thread_tid() const noexcept { return tid_.load(std::memory_order_relaxed); }

 private:
  static constexpr int max_events = 128;
  void loop() noexcept;
  int wait_all(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept;
  int rest(std::int64_t now, std::int64_t deadline, epoll_event* events) noexcept;
  void drain_eventfd() noexcept;

  int epfd_ = -1;
  int evfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<long> tid_{0};
  std::atomic<bool> wake_pending_{false};  // see Design; exchange/store by wakers and the thread
  bool have_pwait2_ = true;                // the thread only
};

}  // namespace weft::detail
