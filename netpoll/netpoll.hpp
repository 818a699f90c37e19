#pragma once
// netpoll.hpp: waiting for readiness on descriptor records, deadlines, and
// the runtime's side of polling (netpoll.cpp holds the design note). The
// records are poll_desc.hpp's; the public face is weft/net.hpp (net.cpp).

#include <sys/epoll.h>

#include <cstdint>

#include "netpoll/poll_desc.hpp"
#include "runtime/netpoll_contract.hpp"

namespace weft::detail {

struct fiber;

// ---- waiting (netpoll.cpp) ----

// netpoll_wait: the operation in direction `dir` got EAGAIN: return once
// the descriptor may be ready, the record is closing, its deadline (when
// `use_pd_deadline`) or `own_deadline` passed, or `*interrupt` is set (by
// a party that then calls netpoll_interrupt). Fibers park on the
// netpoller; other callers block in poll(2) and see an interrupt within
// 100 ms. The caller holds a reference and the direction lock, retries
// its system call and checks the errors itself.
void netpoll_wait(poll_desc& pd, int dir, std::int64_t own_deadline, bool use_pd_deadline,
                  const std::atomic<bool>* interrupt = nullptr);
// netpoll_interrupt: wake the fiber waiting in direction `dir`, if any,
// so it re-checks what it waits for. The caller stored its reason (the
// interrupt flag, seq_cst) first. Any thread; takes no lock.
void netpoll_interrupt(poll_desc& pd, int dir) noexcept;
// netpoll_set_deadline: store a deadline and arm its timer; a waiter that
// is blocked now is woken if the deadline already passed. Throws bad_alloc.
void netpoll_set_deadline(poll_desc& pd, int dir, std::int64_t when);
// netpoll_timed_out: the record's deadline for `dir` has passed.
bool netpoll_timed_out(const poll_desc& pd, int dir) noexcept;
// in_parkable_fiber: the caller is a fiber that may park (not a plain
// thread, not inside weft::blocking).
bool in_parkable_fiber() noexcept;

// ---- the runtime's side (the rest is runtime/netpoll_contract.hpp) ----

// netpoll_start / netpoll_stop: called by the poller when a run starts
// (with its epoll set, the run's processors counting the spares, and
// whether workers poll, WEFT_NETPOLL_WORKER_POLL) and when it is torn down.
void netpoll_start(int epfd, unsigned nprocs_total, bool worker_poll) noexcept;
void netpoll_stop() noexcept;
// netpoll_ready_events: the poller thread's dispatch of epoll events (none
// of them the eventfd): ready every fiber they wake. Returns how many.
std::size_t netpoll_ready_events(const epoll_event* ev, int n) noexcept;
// Who polls (netpoll.cpp): while some worker runs, workers poll the
// descriptors themselves and the poller thread rests on its eventfd.
// netpoll_poller_rest: may the poller rest now? (It then must call
// netpoll_poller_unrest when it wakes.) netpoll_worker_polls: how many
// worker polls so far, so the resting poller can tell that none happened
// during a tick and poll itself. netpoll_worker_idle (the contract): the
// last worker going idle wakes a resting poller.
inline constexpr std::int64_t netpoll_rest_tick = 1'000'000;
bool netpoll_poller_rest() noexcept;
void netpoll_poller_unrest() noexcept;
std::uint64_t netpoll_worker_polls() noexcept;
// netpoll_registered: descriptors registered with this run's epoll set.
std::int64_t netpoll_registered() noexcept;

// ---- for poll_desc.cpp ----

// netpoll_closing: the record was just marked closing: cancel its deadline
// timers and wake the fibers waiting in either direction.
void netpoll_closing(poll_desc& pd) noexcept;
// netpoll_forget: the record is about to be marked free: deregister it
// (borrowed descriptors stay open, so they are removed from epoll) and
// update the count of registered descriptors.
void netpoll_forget(poll_desc& pd, bool borrowed) noexcept;

}  // namespace weft::detail
