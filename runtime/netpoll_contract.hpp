#pragma once
// netpoll_contract.hpp: what the runtime needs from the netpoller, declared
// here and implemented by the netpoller's layer (poller.cpp: the thread;
// netpoll.cpp: the descriptors), as Go's netpoll.go declares its platform's
// contract. Dependencies run one way: the netpoller includes the runtime's
// headers, never the reverse (tools/check_layers.py).

#include <cstdint>

namespace weft::detail {

struct fiber;

// ---- the netpoller thread (poller.cpp) ----

// netpoll_thread_start: create the epoll set and the eventfd, attach the
// descriptor side to them, and start the thread, which sleeps until the
// timer service's earliest deadline (runtime/timers.hpp), fires what is due
// and readies the fibers descriptor events wake. `nprocs_total`: the run's
// processors, spares included; `worker_poll`: idle workers poll epoll
// themselves (WEFT_NETPOLL_WORKER_POLL). Throws std::system_error.
void netpoll_thread_start(unsigned nprocs_total, bool worker_poll);
// netpoll_thread_stop: stop and join the thread; timers stay queued.
// netpoll_thread_destroy: after stop (also after a failed start): detach the
// descriptor side and close the epoll set and the eventfd.
void netpoll_thread_stop() noexcept;
void netpoll_thread_destroy() noexcept;
// netpoll_thread_tid: the thread's OS id (0 until it has started); a
// runtime thread, never a deadlock party (deadlock.cpp).
long netpoll_thread_tid() noexcept;
// netpoll_wake: make the thread re-evaluate its deadline now (the timer
// service calls it when a timer is added before the deadline the thread
// sleeps to, timers.hpp T2). Any thread; at most one write per sleep.
void netpoll_wake() noexcept;

// ---- descriptors (netpoll.cpp) ----

// netpoll_poll_once: a worker that found nothing else to run polls epoll
// without blocking (one worker at a time); it returns one woken fiber to
// run itself and injects the rest. Null when there was nothing.
fiber* netpoll_poll_once() noexcept;
// netpoll_worker_idle: a worker is about to sleep (its processor is on the
// idle list already); the last one wakes a resting netpoller thread.
void netpoll_worker_idle() noexcept;
// netpoll_forked: in a child forked during a run (runtime.cpp, "Fork"):
// forget the epoll set, which is the parent's, so nothing in the child can
// wait on it or change it. Async-signal-safe.
void netpoll_forked() noexcept;
// Counters for diagnostics and deadlock detection: fibers parked on the
// netpoller, and fibers the netpoller woke in this run
// (runtime_stats::netpoll_wakeups).
std::int64_t netpoll_parked() noexcept;
std::uint64_t netpoll_wakeups() noexcept;

}  // namespace weft::detail
