#pragma once
// debug_internal.hpp: diagnostics shared between runtime files: dumps and
// the scheduler trace (debug.cpp), deadlock detection and the tracking of
// foreign threads (deadlock.cpp), and the guard that keeps a runtime alive
// while a non-runtime thread inspects it (runtime.cpp).

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace weft::detail {

struct scheduler;

// runtime_pin: while it lives and is true, g_sched stays valid and run()
// cannot begin its teardown (runtime.cpp L1). On a runtime thread it is
// always true and costs nothing; elsewhere it holds a foreign_inflight slot
// (two locked instructions). False: no runtime accepts plain threads (none
// exists, or run() is shutting down).
class runtime_pin {
 public:
  runtime_pin() noexcept;
  ~runtime_pin();
  runtime_pin(const runtime_pin&) = delete;
  runtime_pin& operator=(const runtime_pin&) = delete;
  explicit operator bool() const noexcept { return ok_; }

 private:
  bool ok_ = false;
  bool counted_ = false;
};

struct machine;
machine* current_m() noexcept;  // machine.hpp

// timer_pin: the running runtime (and its timer service) may be used for
// the scope, if there is one and it is not shutting down. On a runtime
// thread the runtime outlives the call anyway (and its timers outlive
// run()'s unwinding of fibers), so only other threads pay for a
// runtime_pin (two locked operations). after(), tickers (timer_chan.cpp)
// and context deadlines (context_tree.cpp) take one.
class timer_pin {
 public:
  timer_pin() noexcept {
    if (current_m() != nullptr) {
      ok_ = true;
    } else {
      pin_.emplace();
      ok_ = static_cast<bool>(*pin_);
    }
  }
  bool ok() const noexcept { return ok_; }

 private:
  std::optional<runtime_pin> pin_;
  bool ok_ = false;
};

// write_dump: the fiber dump, at most `limit` fibers listed. Returns the
// number of live fibers.
std::size_t write_dump(scheduler& s, std::ostream& out, std::size_t limit);
std::string schedtrace_line(scheduler& s, std::int64_t since_start_ns);

// SIGQUIT dumps (WEFT_SIGQUIT=dump): run() installs the handler when the
// variable asks for it and removes it at the end; sysmon takes the pending
// request and prints.
void sigquit_install();
void sigquit_remove();
bool sigquit_take();

// Foreign threads (deadlock.cpp). parties_begin: after the runtime started
// its own threads, remember which threads exist and open this run's party
// registrations; parties_end: close them (run() stopped accepting plain
// threads). note_foreign_call: the calling thread (if it is not a runtime
// thread) is calling into weft; it is a possible party from now on.
// Repeated calls in one run cost a thread-local comparison; it pins the
// runtime itself (L1).
void parties_begin(scheduler& s);
void parties_end() noexcept;
void note_foreign_call() noexcept;
// tls_plain_thread (switch.cpp): 1 on a thread that runs no machine. Read
// directly only in a function that cannot switch before it uses the value
// (a thread-local's address must not be kept across a switch); inline code
// reads it through weft/detail/park.hpp. note_plain_call: the entry check
// of an out-of-line operation (one thread-local load on a machine).
extern constinit thread_local std::uint32_t tls_plain_thread asm("weft_tls_plain_thread")
    __attribute__((tls_model("initial-exec")));
inline void note_plain_call() noexcept {
  if (tls_plain_thread != 0) note_foreign_call();
}

// deadlock_tick: sysmon's check, when every processor is idle.
// impossible: something can still wake a fiber by itself (a timer, a
// descriptor, a busy processor, an offloaded blocking call), and its end
// pokes sysmon, which may sleep until then (deadlock.cpp D3); watching:
// look again within 20 ms; deadlocked: confirmed, the message is in
// s.dl.message.
enum class deadlock_verdict { impossible, watching, deadlocked };
deadlock_verdict deadlock_tick(scheduler& s, std::int64_t now);

// partial_deadlock_tick: sysmon's once-a-second look for fibers stuck on
// weft::mutex cycles (or on locks held by finished fibers), which it
// reports once each as a warning. partial_deadlock_reset: at run start.
void partial_deadlock_tick(scheduler& s, std::int64_t now);
void partial_deadlock_reset();

// describe_fiber: one dump line, e.g.
// "fiber 7 [mutex 0x5610, 2.31 s]: started at main.cpp:12".
struct fiber;
std::string describe_fiber(const fiber& f, std::int64_t now, std::int64_t now_coarse);

}  // namespace weft::detail
