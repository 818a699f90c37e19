#pragma once
// machine.hpp: a machine (Go's M): an OS thread that runs fibers while it
// holds a processor.
//
// Each machine has its own scheduler context `g0` on the thread's native
// stack. A fiber that parks switches straight to the next local fiber when
// there is one, and to g0 only when the scheduler must look further (global
// queue, stealing, sleeping).
//
// Thread-locals and migration: a fiber can resume on another thread, and
// compilers keep the address of a thread_local in a register across calls
// (README.md, "Fibers and threads"), so the runtime reads its per-thread state only
// through current_m(), which is opaque to the optimiser. Never cache its
// result across anything that can switch.

#include <atomic>
#include <cstdint>
#include <thread>

#include "runtime/context.hpp"

namespace weft::detail {

struct processor;
struct fiber;

struct machine {
  exec_context g0;               // this thread's scheduler context
  thread_slots ts;               // this thread's exception globals and errno (context.hpp)
  processor* p = nullptr;        // held processor; written by this thread, or by
                                 // the waker before unpark (through nextp)
  processor* nextp = nullptr;    // handed over by startm under scheduler::mu, read after wake
  fiber* curg = nullptr;         // the running fiber; null on g0. This thread only.
  bool spinning = false;         // counted in scheduler::nmspinning. This thread only.
  bool in_blocking = false;      // inside weft::blocking(). This thread only.
  machine* idle_link = nullptr;  // guarded by scheduler::mu
  std::uint32_t id = 0;
  // OS thread id, set by the thread itself at start. Atomic (relaxed):
  // sysmon's deadlock check reads it (under scheduler::mu, which the
  // writer does not hold) to tell runtime threads from plain ones; a 0
  // read only makes it wait a tick longer.
  std::atomic<long> tid{0};
  std::uint64_t rng = 0;  // xorshift state, this thread only
  // Futex word: 0 = asleep or about to sleep; wake_woken = handed work by
  // startm (after it set nextp), consumed by the sleeper; wake_exit = told
  // to exit at shutdown, never consumed (S1, scheduler.cpp). Wakers set
  // their bit by fetch_or (release); the sleeper clears wake_woken by
  // fetch_and (acquire), so it synchronises with every waker so far.
  static constexpr std::uint32_t wake_woken = 1;
  static constexpr std::uint32_t wake_exit = 2;
  std::atomic<std::uint32_t> wake{0};
  std::thread thread;

  // exiting: shutdown told this machine to exit (acquire: pairs with
  // wake_all_for_exit's fetch_or).
  bool exiting() const noexcept { return (wake.load(std::memory_order_acquire) & wake_exit) != 0; }

  std::uint32_t rand() noexcept {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return static_cast<std::uint32_t>(rng >> 32);
  }
};

// current_m: the machine running on this thread, or null. Opaque to the
// optimiser so it is re-read after every possible switch.
machine* current_m() noexcept;
void set_current_m(machine* m) noexcept;

}  // namespace weft::detail
