// program.cpp: generating, running and checking one random CSP program
// (program.hpp has the model and the invariants).

#include "program.hpp"

#include <time.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>
#include <weft/detail/introspect.hpp>
#include <weft/weft.hpp>

namespace proptest {
namespace {

using clk = std::chrono::steady_clock;
using std::chrono::microseconds;
using value = std::uint64_t;
using vchan = weft::chan<value>;

constexpr unsigned max_participants = 128;
constexpr unsigned max_per = 512;
constexpr unsigned n_keys = 7;  // FIFO streams: 4 channels, mailbox, bridge, guard log
constexpr unsigned key_mailbox = 4, key_bridge = 5, key_guard = 6;

// rng: one participant's choices (xorshift64*), seeded from the program seed.
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {
    if (s == 0) s = 1;
  }
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  unsigned below(unsigned n) { return static_cast<unsigned>((next() >> 33) % n); }
  bool one_in(unsigned n) { return below(n) == 0; }
};

// A plain thread's pause: its own work, never a way to order events.
void thread_pause(microseconds d) {
  timespec ts{0, static_cast<long>(d.count() * 1000)};
  ::nanosleep(&ts, nullptr);
}

struct failures {
  std::mutex mu;
  std::string text;
  unsigned count = 0;
  void add(const std::string& s) {
    std::lock_guard<std::mutex> lk(mu);
    if (count++ < 25) text += s + "\n";
  }
};

// ledger: what happened to every value (participant << 16 | sequence).
enum : std::uint8_t { v_none, v_attempt, v_sent, v_rejected };
struct ledger {
  std::unique_ptr<std::atomic<std::uint8_t>[]> status {
    new std::atomic<std::uint8_t>[ max_participants * max_per ]()
  };
  std::unique_ptr<std::atomic<std::uint32_t>[]> received {
    new std::atomic<std::uint32_t>[ max_participants * max_per ]()
  };
  std::unique_ptr<std::atomic<std::uint32_t>[]> drained {
    new std::atomic<std::uint32_t>[ max_participants * max_per ]()
  };
  std::atomic<unsigned> next_participant{0};

  static value make(unsigned participant, unsigned seq) { return (value{participant} << 16) | seq; }
  static std::size_t index(value v) { return (v >> 16) * max_per + (v & 0xffff); }
  static bool valid(value v) { return (v >> 16) < max_participants && (v & 0xffff) < max_per; }
  unsigned participant() { return next_participant.fetch_add(1); }
  void set(value v, std::uint8_t st) { status[index(v)].store(st); }
};

std::string hex(value v) {
  char b[32];
  std::snprintf(b, sizeof b, "%u:%u", static_cast<unsigned>(v >> 16),
                static_cast<unsigned>(v & 0xffff));
  return b;
}

// fifo: one receiver's view of order, per (stream, sender).
struct fifo {
  std::vector<int> last = std::vector<int>(n_keys * max_participants, -1);
  void see(unsigned key, value v, failures& f) {
    int& l = last[key * max_participants + (v >> 16)];
    const int seq = static_cast<int>(v & 0xffff);
    if (seq <= l) {
      f.add("order: value " + hex(v) + " on stream " + std::to_string(key) + " after seq " +
            std::to_string(l) + " of the same sender");
    }
    l = seq;
  }
};

// mailbox: values through a weft::mutex + condition_variable queue.
struct mailbox {
  weft::mutex mu;
  weft::condition_variable cv;
  std::deque<value> q;
  bool closed = false;

  bool put(value v) {
    std::lock_guard<weft::mutex> lk(mu);
    if (closed) return false;
    q.push_back(v);
    cv.notify_one();
    return true;
  }
  std::optional<value> take_for(microseconds d) {
    std::unique_lock<weft::mutex> lk(mu);
    if (!cv.wait_for(lk, d, [&] { return !q.empty() || closed; }) || q.empty()) {
      return std::nullopt;
    }
    value v = q.front();
    q.pop_front();
    return v;
  }
  std::optional<value> take() {  // until closed and empty
    std::unique_lock<weft::mutex> lk(mu);
    cv.wait(lk, [&] { return !q.empty() || closed; });
    if (q.empty()) return std::nullopt;
    value v = q.front();
    q.pop_front();
    if (q.size() % 2 == 0) cv.notify_all();  // wakes spare waiters too (all re-check)
    return v;
  }
  void close() {
    std::lock_guard<weft::mutex> lk(mu);
    closed = true;
    cv.notify_all();
  }
};

// Channels and threads that outlive the runs (the bridge).
struct persistent {
  vchan req{4}, reply{4}, data{8};
  std::atomic<bool> stop{false};
  unsigned participant = 0;
};

// world: one run of the program.
struct world {
  const spec& sp;
  failures& fail;
  ledger& led;
  persistent& pers;
  std::array<vchan, 4> ch;
  std::atomic<bool> closing[4] = {};  // set just before the channel is closed
  mailbox mb;
  vchan guard_log;

  weft::mutex mu;  // shared with plain threads
  long counter = 0;
  std::atomic<long> increments{0};
  std::atomic<int> inside{0};
  weft::mutex gm;  // guards only (never a plain thread's)
  long gcounter = 0;

  weft::wait_group senders_wg, receivers_wg, children_wg, closer_wg, unwind_wg;
  std::atomic<long> sent_total{0}, received_total{0}, expected_total{0};
  // Receiving fibers unwound inside a receive: each may take a value with
  // it (handed over by a waker, never returned), the one loss allowed.
  std::atomic<long> unwound_in_recv{0};
  std::atomic<bool> stop_threads{false};
  vchan watcher_release;
  vchan never;  // nobody sends on it
  vchan sink;   // nobody receives from it

  world(const spec& s, failures& f, ledger& l, persistent& p)
      : sp(s), fail(f), led(l), pers(p), guard_log(256) {
    for (unsigned i = 0; i < 4; ++i) ch[i] = i < s.nchan ? vchan(s.cap[i]) : vchan::nil();
  }

  void record(fifo& fo, unsigned key, value v) {
    if (!ledger::valid(v)) {
      fail.add("received a value nobody made: " + hex(v));
      return;
    }
    if (led.status[ledger::index(v)].load() == v_none) {
      fail.add("received value " + hex(v) + " that was never sent");
    }
    if (led.received[ledger::index(v)].fetch_add(1) != 0) {
      fail.add("value " + hex(v) + " received twice");
    }
    fo.see(key, v, fail);
    received_total.fetch_add(1);
  }

  void mutex_section(rng& r, bool fiber) {
    std::lock_guard<weft::mutex> lk(mu);
    if (inside.exchange(1) != 0) fail.add("weft::mutex: two holders at once");
    struct leave {  // also when the fiber is unwound in the yield below
      std::atomic<int>& in;
      ~leave() { in.store(0); }
    } left{inside};
    ++counter;
    increments.fetch_add(1);
    if (fiber && r.one_in(4)) weft::yield();  // holding a weft::mutex across a switch is fine
  }

  // extra: something besides channel traffic, between two operations.
  void extra(rng& r, bool fiber) {
    switch (r.below(24)) {
      case 0:
        weft::yield();
        break;
      case 1:
        if (fiber) weft::sleep_for(microseconds(r.below(200)));
        break;
      case 2:
      case 3:
        mutex_section(r, fiber);
        break;
      case 4:
        if (fiber && sp.blocking) {
          const unsigned us = r.below(300);
          weft::blocking([us] { thread_pause(microseconds(us)); });
        }
        break;
      case 5:
        spawn_child(r);
        break;
      default:
        break;
    }
  }

  void spawn_child(rng& r) {
    children_wg.add(1);
    const std::uint64_t s = r.next();
    try {
      weft::go([this, s] {
        rng cr(s);
        mutex_section(cr, true);
        children_wg.done();
      });
    } catch (const std::logic_error&) {
      children_wg.done();  // from a plain thread once shutdown began: refused, as documented
    }
  }

  // closed_now: after a send_case threw closed_channel, the channels it
  // may have been (closing is set before close()).
  void forget_closed(bool* open) {
    for (unsigned c = 0; c < sp.nchan; ++c) {
      if (closing[c].load()) open[c] = false;
    }
  }

  vchan pick(bool* open, rng& r, unsigned* which) {
    unsigned n = 0, cand[4];
    for (unsigned c = 0; c < sp.nchan; ++c) {
      if (open[c]) cand[n++] = c;
    }
    if (n == 0) return vchan::nil();
    *which = cand[r.below(n)];
    return ch[*which];
  }

  // deliver: send v on some open channel (or the mailbox); record the outcome.
  void deliver(value v, bool* open, rng& r, bool fiber) {
    for (;;) {
      unsigned which = 0;
      vchan c = pick(open, r, &which);
      if (c == vchan::nil()) {
        led.set(v, v_rejected);  // every channel closed: the close rule
        return;
      }
      const unsigned how = r.below(10);
      try {
        if (how <= 3) {
          led.set(v, v_attempt);
          c.send(v);
          led.set(v, v_sent);
        } else if (how <= 5 && sp.mailbox) {
          led.set(v, v_attempt);
          if (!mb.put(v)) {
            led.set(v, v_rejected);
            return;
          }
          led.set(v, v_sent);
        } else {
          vchan cs[4];
          for (unsigned i = 0; i < 4; ++i) cs[i] = open[i] ? ch[i] : vchan::nil();
          bool sent = false;
          auto mark = [&] { sent = true; };
          led.set(v, v_attempt);
          if (how == 8 || (how == 9 && (!fiber || (sp.without & f_timeouts) != 0))) {
            weft::select(weft::send_case(cs[0], v, mark), weft::send_case(cs[1], v, mark),
                         weft::send_case(cs[2], v, mark), weft::send_case(cs[3], v, mark),
                         weft::default_case());
          } else if (how == 9) {
            weft::select(weft::send_case(cs[0], v, mark), weft::send_case(cs[1], v, mark),
                         weft::send_case(cs[2], v, mark), weft::send_case(cs[3], v, mark),
                         weft::recv_case(weft::after(microseconds(20 + r.below(500)))));
          } else {
            weft::select(weft::send_case(cs[0], v, mark), weft::send_case(cs[1], v, mark),
                         weft::send_case(cs[2], v, mark), weft::send_case(cs[3], v, mark));
          }
          if (!sent) {
            led.set(v, v_none);  // not sent: try again
            if (fiber) {
              weft::yield();
            } else {
              thread_pause(microseconds(r.below(100)));
            }
            continue;
          }
          led.set(v, v_sent);
        }
        sent_total.fetch_add(1);
        return;
      } catch (const weft::closed_channel&) {
        led.set(v, v_none);
        open[which] = false;
        forget_closed(open);
      }
    }
  }

  void sender(unsigned participant, rng r, bool fiber) {
    bool open[4] = {};
    for (unsigned c = 0; c < sp.nchan; ++c) open[c] = true;
    for (unsigned seq = 0; seq < sp.per_sender; ++seq) {
      extra(r, fiber);
      deliver(ledger::make(participant, seq), open, r, fiber);
    }
    senders_wg.done();
  }

  void receiver(rng r, bool fiber) {
    fifo fo;
    vchan cs[4];
    for (unsigned i = 0; i < 4; ++i) cs[i] = ch[i];
    const vchan bridge = sp.bridge ? pers.data : vchan::nil();
    auto live = [&] {
      for (auto& c : cs) {
        if (!(c == vchan::nil())) return true;
      }
      return false;
    };
    while (live()) {
      extra(r, fiber);
      const unsigned how = r.below(10);
      if (how == 9 && sp.mailbox) {
        if (auto v = mb.take_for(microseconds(r.below(300)))) record(fo, key_mailbox, *v);
        continue;
      }
      auto on = [&](unsigned i) {
        return [&, i](std::optional<value> v) {
          if (v) {
            record(fo, i, *v);
          } else {
            cs[i] = vchan::nil();  // closed and drained
          }
        };
      };
      auto on_bridge = [&](std::optional<value> v) {
        if (v) record(fo, key_bridge, *v);
      };
      struct count_unwind {
        world* w;
        bool fiber;
        ~count_unwind() {
          if (fiber && std::uncaught_exceptions() != 0) w->unwound_in_recv.fetch_add(1);
        }
      } counted{this, fiber};
      if (how == 7 || (how == 8 && !fiber)) {
        bool idle = false;
        weft::select(weft::recv_case(cs[0], on(0)), weft::recv_case(cs[1], on(1)),
                     weft::recv_case(cs[2], on(2)), weft::recv_case(cs[3], on(3)),
                     weft::recv_case(bridge, on_bridge), weft::default_case([&] { idle = true; }));
        if (idle) {
          if (fiber) {
            weft::yield();
          } else {
            thread_pause(microseconds(r.below(100)));
          }
        }
      } else if (how == 8 && (sp.without & f_timeouts) == 0) {
        weft::select(weft::recv_case(cs[0], on(0)), weft::recv_case(cs[1], on(1)),
                     weft::recv_case(cs[2], on(2)), weft::recv_case(cs[3], on(3)),
                     weft::recv_case(bridge, on_bridge),
                     weft::recv_case(weft::after(microseconds(20 + r.below(1000)))));
      } else {
        weft::select(weft::recv_case(cs[0], on(0)), weft::recv_case(cs[1], on(1)),
                     weft::recv_case(cs[2], on(2)), weft::recv_case(cs[3], on(3)),
                     weft::recv_case(bridge, on_bridge));
      }
    }
    if (sp.mailbox) {
      while (auto v = mb.take()) record(fo, key_mailbox, *v);
    }
    receivers_wg.done();
  }

  void close_channel(unsigned c) {
    closing[c].store(true);
    try {
      ch[c].close();
    } catch (const weft::closed_channel&) {
      // closed already (the early close, or the closer before shutdown)
    }
  }

  void closer(rng r) {
    if (sp.early_close) {
      // After about half the values: senders then meet a closed channel.
      const long half = expected_total.load() / 2;
      for (int i = 0; i < 100000 && sent_total.load() < half; ++i) {
        weft::sleep_for(microseconds(50));
      }
      close_channel(r.below(sp.nchan));
    }
    senders_wg.wait();
    for (unsigned c = 0; c < sp.nchan; ++c) close_channel(c);
    if (sp.mailbox) mb.close();
    closer_wg.done();
  }

  void mutex_thread(rng r) {
    while (!stop_threads.load()) {
      mutex_section(r, false);
      if (r.one_in(8)) thread_pause(microseconds(r.below(50)));
    }
  }

  // ---- destructors that act at unwinding ----

  struct guard {
    world* w;
    std::uint64_t s;
    unsigned participant;
    guard(world* wd, std::uint64_t seed, unsigned p) : w(wd), s(seed), participant(p) {
      w->unwind_wg.add(1);
    }
    guard(const guard&) = delete;
    ~guard() { w->guard_actions(s, participant); }
  };

  void guard_actions(std::uint64_t s, unsigned participant) {
    rng r(s);
    // On a normal scope exit a destructor must not wait: if shutdown
    // unwinds the fiber there, the unwind is thrown out of a noexcept
    // destructor and ends the process (README, Shutdown). Only the log
    // send, which never blocks, happens then.
    const bool unwinding = std::uncaught_exceptions() > 0;
    const unsigned n = 1 + r.below(3);
    for (unsigned i = 0; i < n; ++i) {
      unsigned what = r.below(6);
      if (!unwinding || ((what == 2 || what == 3) && (sp.without & f_guard_sleep) != 0) ||
          (what == 4 && (sp.without & f_guard_go) != 0) ||
          (what == 0 && (sp.without & f_guard_lock) != 0)) {
        what = 1;  // the log send instead
      }
      switch (what) {
        case 0: {
          std::lock_guard<weft::mutex> lk(gm);
          ++gcounter;
          break;
        }
        case 1: {
          const value v = ledger::make(participant, i);
          led.set(v, v_attempt);
          guard_log.send(v);  // room for every guard's values: never blocks
          led.set(v, v_sent);
          break;
        }
        case 2:
          weft::yield();
          break;
        case 3:
          weft::sleep_for(microseconds(1 + r.below(200)));
          break;
        case 4:
          spawn_child(r);
          break;
        default:
          break;
      }
    }
    unwind_wg.done();
  }

  // watcher: waits in its destructor for every guard to be done.
  void watcher() {
    struct wait_all {
      world* w;
      ~wait_all() { w->unwind_wg.wait(); }
    } g{this};
    watcher_release.recv();
  }

  // stuck: a fiber that blocks for good (the deadlock ending).
  void stuck(std::uint64_t s, unsigned participant) {
    rng r(s);
    guard g(this, r.next(), participant);
    switch (r.below(4)) {
      case 0:
        never.recv();
        break;
      case 1:
        sink.send(0);
        break;
      case 2: {
        if ((sp.without & f_guard_lock) != 0) {
          never.recv();
          break;
        }
        std::lock_guard<weft::mutex> lk(gm);  // main holds it
        break;
      }
      default:
        weft::select(weft::recv_case(never), weft::recv_case(vchan::nil()));
        break;
    }
  }
};

// ---- one run ----

struct run_result {
  bool returned = false;
  bool deadlock = false;
  std::string other;  // another exception's what()
};

void main_fiber(world& w, rng r, std::vector<std::thread>& threads) {
  const spec& sp = w.sp;
  w.expected_total.store(static_cast<long>(sp.per_sender) * (sp.senders + sp.thread_senders));
  w.senders_wg.add(static_cast<int>(sp.senders + sp.thread_senders));
  w.receivers_wg.add(static_cast<int>(sp.receivers + sp.thread_receivers));
  w.closer_wg.add(1);
  bool watched = false;
  if (sp.guards) {
    watched = true;
    weft::go([&w] { w.watcher(); });
  }
  for (unsigned i = 0; i < sp.senders; ++i) {
    const unsigned p = w.led.participant();
    const std::uint64_t s = r.next();
    if (sp.guards && r.one_in(2)) {
      const std::uint64_t gs = r.next();
      const unsigned gp = w.led.participant();
      weft::go([&w, p, s, gs, gp] {
        world::guard g(&w, gs, gp);
        w.sender(p, rng(s), true);
      });
    } else {
      weft::go([&w, p, s] { w.sender(p, rng(s), true); });
    }
  }
  for (unsigned i = 0; i < sp.receivers; ++i) {
    const std::uint64_t s = r.next();
    if (sp.guards && r.one_in(2)) {
      const std::uint64_t gs = r.next();
      const unsigned gp = w.led.participant();
      weft::go([&w, s, gs, gp] {
        world::guard g(&w, gs, gp);
        w.receiver(rng(s), true);
      });
    } else {
      weft::go([&w, s] { w.receiver(rng(s), true); });
    }
  }
  const std::uint64_t cs = r.next();
  weft::go([&w, cs] { w.closer(rng(cs)); });
  for (unsigned i = 0; i < sp.thread_senders; ++i) {
    const unsigned p = w.led.participant();
    const std::uint64_t s = r.next();
    threads.emplace_back([&w, p, s] { w.sender(p, rng(s), false); });
  }
  for (unsigned i = 0; i < sp.thread_receivers; ++i) {
    const std::uint64_t s = r.next();
    threads.emplace_back([&w, s] { w.receiver(rng(s), false); });
  }
  if (sp.mutex_thread) {
    const std::uint64_t s = r.next();
    threads.emplace_back([&w, s] { w.mutex_thread(rng(s)); });
    // Fibers queueing on the same mutex, so the thread's unlocks hand it
    // over to parked fibers, also while shutdown unwinds them.
    const unsigned lockers = 1 + r.below(3);
    w.children_wg.add(static_cast<int>(lockers));
    for (unsigned i = 0; i < lockers; ++i) {
      const std::uint64_t ls = r.next();
      weft::go([&w, ls] {
        rng lr(ls);
        while (!w.stop_threads.load()) w.mutex_section(lr, true);
        w.children_wg.done();
      });
    }
  }
  if (sp.timer_storm) {
    // Batched after() timers made, joined and fired all the time (a timer
    // made late joins a batch the poller may be firing).
    const unsigned n = 1 + r.below(3);
    w.children_wg.add(static_cast<int>(n));
    for (unsigned i = 0; i < n; ++i) {
      const std::uint64_t ts = r.next();
      weft::go([&w, ts] {
        rng tr(ts);
        for (int k = 0; k < 100 && !w.stop_threads.load(); ++k) {
          weft::select(weft::recv_case(w.never),
                       weft::recv_case(weft::after(microseconds(64 + tr.below(200)))));
        }
        w.children_wg.done();
      });
    }
  }
  if (sp.bridge) {
    // A request to the thread that outlives the runs; it polls for it
    // without blocking and answers after a while (a possible party:
    // no deadlock may be reported meanwhile).
    w.pers.req.send(r.next() & 0xffff);
    if (!w.pers.reply.recv()) w.fail.add("bridge: reply channel closed");
  }

  if (sp.end == ending::abandon) {
    // Return in the middle of the traffic.
    const long target =
        static_cast<long>(r.below(static_cast<unsigned>(w.expected_total.load() + 1))) / 2;
    for (int i = 0; i < 20000 && w.received_total.load() < target; ++i) {
      weft::sleep_for(microseconds(50));
    }
    return;
  }

  w.receivers_wg.wait();
  w.closer_wg.wait();
  w.stop_threads.store(true);
  w.children_wg.wait();
  for (auto& t : threads) {
    weft::blocking([&t] { t.join(); });
  }
  threads.clear();

  if (sp.end == ending::deadlock) {
    std::lock_guard<weft::mutex> held(w.gm);  // released when main is unwound
    const unsigned k = 2 + r.below(4);
    for (unsigned i = 0; i < k; ++i) {
      const std::uint64_t s = r.next();
      const unsigned gp = w.led.participant();
      weft::go([&w, s, gp] { w.stuck(s, gp); });
    }
    w.never.recv();  // every fiber blocks for good
    w.fail.add("deadlock ending: main's receive returned");
    return;
  }

  if (watched) w.watcher_release.close();
  w.unwind_wg.wait();
  w.children_wg.wait();
  // Nothing may stay parked: every fiber but main finishes.
  for (int i = 0; i < 50000 && weft::stats().fibers_alive > 1; ++i) {
    weft::sleep_for(microseconds(200));
  }
  const auto st = weft::stats();
  if (st.fibers_alive != 1) {
    w.fail.add("clean ending: " + std::to_string(st.fibers_alive - 1) +
               " fiber(s) still alive after every participant finished");
  }
}

run_result run_once(world& w, std::uint64_t seed, std::vector<std::thread>& threads) {
  run_result rr;
  weft::options o;
  o.workers = w.sp.workers;
  try {
    weft::run([&] { main_fiber(w, rng(seed), threads); }, o);
    rr.returned = true;
  } catch (const weft::deadlock_error&) {
    rr.deadlock = true;
  } catch (const std::exception& e) {
    rr.other = e.what();
  }
  return rr;
}

// drain: receive what is left in c without blocking.
void drain(world& w, const vchan& c, unsigned key, fifo& fo) {
  for (;;) {
    bool got = false;
    weft::select(weft::recv_case(c,
                                 [&](std::optional<value> v) {
                                   if (!v) return;
                                   got = true;
                                   if (!ledger::valid(v.value())) {
                                     w.fail.add("drained a value nobody made");
                                     return;
                                   }
                                   w.led.drained[ledger::index(*v)].fetch_add(1);
                                   fo.see(key, *v, w.fail);
                                 }),
                 weft::default_case());
    if (!got) return;
  }
}

void bridge_thread(persistent& pers, ledger& led, std::uint64_t seed) {
  rng r(seed);
  unsigned seq = 0;
  while (!pers.stop.load()) {
    std::optional<value> req;
    weft::select(weft::recv_case(pers.req, [&](std::optional<value> v) { req = v; }),
                 weft::default_case());
    if (req) {
      thread_pause(microseconds(r.below(30000)));  // slow to answer
      pers.reply.send(*req);
    }
    if (seq < max_per) {
      const value v = ledger::make(pers.participant, seq);
      led.set(v, v_attempt);
      bool sent = false;
      weft::select(weft::send_case(pers.data, v, [&] { sent = true; }), weft::default_case());
      if (sent) {
        led.set(v, v_sent);
        ++seq;
      } else {
        led.set(v, v_none);
      }
    }
    thread_pause(microseconds(100 + r.below(400)));
  }
}

}  // namespace

std::uint32_t parse_features(const std::string& list, std::string* error) {
  static const struct {
    const char* name;
    std::uint32_t bit;
  } names[] = {{"abandon", f_abandon},       {"deadlock", f_deadlock},
               {"threads", f_threads},       {"mutex-thread", f_mutex_thread},
               {"bridge", f_bridge},         {"guards", f_guards},
               {"guard-go", f_guard_go},     {"guard-sleep", f_guard_sleep},
               {"guard-lock", f_guard_lock}, {"blocking", f_blocking},
               {"mailbox", f_mailbox},       {"early-close", f_early_close},
               {"timeouts", f_timeouts},     {"repeat", f_repeat}};
  std::uint32_t bits = 0;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    const std::size_t comma = std::min(list.find(',', pos), list.size());
    const std::string name = list.substr(pos, comma - pos);
    bool found = false;
    for (const auto& n : names) {
      if (name == n.name) {
        bits |= n.bit;
        found = true;
      }
    }
    if (!found) {
      *error = "unknown feature '" + name + "'";
      return 0;
    }
    pos = comma + 1;
  }
  return bits;
}

spec make_spec(std::uint64_t seed, std::uint32_t without) {
  std::mt19937_64 g(seed);
  auto pick = [&](unsigned n) { return static_cast<unsigned>(g() % n); };
  spec s;
  s.seed = seed;
  static constexpr unsigned workers[] = {1, 1, 2, 2, 3, 4, 8};
  s.workers = workers[pick(7)];
  s.runs = 1 + (pick(4) == 0 ? 1 + pick(2) : 0);
  const unsigned e = pick(10);
  s.end = e < 5 ? ending::clean : e < 8 ? ending::abandon : ending::deadlock;
  s.nchan = 1 + pick(4);
  static constexpr std::size_t caps[] = {0, 0, 1, 2, 4, 16};
  for (unsigned i = 0; i < 4; ++i) s.cap[i] = caps[pick(6)];
  s.senders = 1 + pick(5);
  s.receivers = 1 + pick(3);
  s.per_sender = 5 + pick(40);
  s.thread_senders = pick(3) == 0 ? 1 + pick(2) : 0;
  s.thread_receivers = pick(4) == 0 ? 1 : 0;
  s.early_close = pick(4) == 0;
  s.mailbox = pick(3) == 0;
  s.mutex_thread = pick(3) == 0;
  s.bridge = s.end != ending::deadlock && pick(4) == 0;
  s.guards = pick(2) == 0 || s.end == ending::deadlock;
  s.blocking = pick(3) == 0;
  s.timer_storm = pick(3) == 0;
  // Left-out features: the draws above stay the same, so the rest of the
  // program is the one the seed names.
  s.without = without;
  if ((without & f_repeat) != 0) s.runs = 1;
  if ((without & f_abandon) != 0 && s.end == ending::abandon) s.end = ending::clean;
  if ((without & f_deadlock) != 0 && s.end == ending::deadlock) s.end = ending::clean;
  if ((without & f_threads) != 0) s.thread_senders = s.thread_receivers = 0;
  if ((without & f_mutex_thread) != 0) s.mutex_thread = false;
  if ((without & f_bridge) != 0 || s.end == ending::deadlock) s.bridge = false;
  if ((without & f_guards) != 0) s.guards = false;
  if ((without & f_blocking) != 0) s.blocking = false;
  if ((without & f_mailbox) != 0) s.mailbox = false;
  if ((without & f_early_close) != 0) s.early_close = false;
  if ((without & f_timeouts) != 0) s.timer_storm = false;
  return s;
}

std::string describe(const spec& s) {
  std::ostringstream o;
  static const char* const ends[] = {"clean", "abandon", "deadlock"};
  o << "workers=" << s.workers << " runs=" << s.runs << " ending=" << ends[static_cast<int>(s.end)]
    << " chans=" << s.nchan << " caps=";
  for (unsigned i = 0; i < s.nchan; ++i) o << (i ? "," : "") << s.cap[i];
  o << " senders=" << s.senders << "+" << s.thread_senders << "t receivers=" << s.receivers << "+"
    << s.thread_receivers << "t values/sender=" << s.per_sender;
  if (s.early_close) o << " early-close";
  if (s.mailbox) o << " mailbox";
  if (s.mutex_thread) o << " mutex-thread";
  if (s.bridge) o << " bridge";
  if (s.guards) o << " guards";
  if (s.blocking) o << " blocking";
  if (s.timer_storm) o << " timer-storm";
  if (s.without != 0) o << " without=0x" << std::hex << s.without;
  return o.str();
}

std::string run_program(const spec& sp) {
  failures fail;
  ledger led;
  persistent pers;
  pers.participant = led.participant();
  std::thread bridge;
  if (sp.bridge) {
    bridge = std::thread([&pers, &led, s = sp.seed] { bridge_thread(pers, led, s ^ 0xb1d9e); });
  }
  std::vector<std::unique_ptr<world>> worlds;
  rng r(sp.seed);
  for (unsigned run = 0; run < sp.runs; ++run) {
    worlds.push_back(std::make_unique<world>(sp, fail, led, pers));
    world& w = *worlds.back();
    std::vector<std::thread> threads;
    const run_result rr = run_once(w, r.next(), threads);
    const std::string at = "run " + std::to_string(run + 1) + ": ";
    if (!rr.other.empty()) fail.add(at + "run() threw: " + rr.other);
    if (sp.end == ending::deadlock && !rr.deadlock) {
      fail.add(at + "expected deadlock_error, run() " +
               (rr.returned ? "returned" : "threw something else"));
    }
    if (sp.end != ending::deadlock && rr.deadlock) fail.add(at + "false deadlock_error");
    const auto td = weft::detail::last_teardown();
    if (td.fiber_records_live != 0) fail.add(at + "teardown: fiber records leaked");
    if (td.stacks_out != 0) fail.add(at + "teardown: stacks leaked");
    if (td.timers_pending != 0) fail.add(at + "teardown: timers leaked");
    if (td.threads_alive != 0) fail.add(at + "teardown: runtime threads left");
    if (sp.end == ending::clean && td.fibers_unwound != 0) {
      fail.add(at + "clean ending left " + std::to_string(td.fibers_unwound) +
               " fiber(s) to unwind");
    }
    // Abandoned: stop the plain threads, which may still be blocked on
    // channels, the mailbox or the mutex.
    w.stop_threads.store(true);
    for (unsigned c = 0; c < sp.nchan; ++c) w.close_channel(c);
    if (sp.mailbox) w.mb.close();
    for (auto& t : threads) t.join();
    if (sp.end != ending::abandon && w.counter != w.increments.load()) {
      fail.add(at + "mutex counter " + std::to_string(w.counter) +
               " != " + std::to_string(w.increments.load()) + " increments");
    }
  }
  if (bridge.joinable()) {
    pers.stop.store(true);
    bridge.join();
  }

  // What is still buffered counts as delivered-later; then every value.
  for (auto& wp : worlds) {
    world& w = *wp;
    fifo fo;
    for (unsigned c = 0; c < sp.nchan; ++c) drain(w, w.ch[c], c, fo);
    drain(w, w.guard_log, key_guard, fo);
    for (value v : w.mb.q) {
      if (ledger::valid(v)) led.drained[ledger::index(v)].fetch_add(1);
    }
  }
  if (!worlds.empty()) {
    fifo fo;
    drain(*worlds.front(), pers.data, key_bridge, fo);
  }
  long may_lose = 0;
  for (auto& wp : worlds) may_lose += wp->unwound_in_recv.load();
  unsigned lost = 0, dup = 0, phantom = 0, rejected_got = 0, doubt = 0;
  std::string first;
  for (std::size_t i = 0; i < std::size_t{max_participants} * max_per; ++i) {
    const unsigned got = led.received[i].load() + led.drained[i].load();
    const std::uint8_t st = led.status[i].load();
    const value v = (value{static_cast<unsigned>(i / max_per)} << 16) | (i % max_per);
    auto note = [&](unsigned& n, const char* what) {
      if (n++ == 0) first += std::string(what) + " " + hex(v) + "; ";
    };
    if (got > 1) note(dup, "duplicated");
    switch (st) {
      case v_sent:
        if (got == 0) note(lost, "lost");
        break;
      case v_rejected:
        if (got != 0) note(rejected_got, "received after its send failed");
        break;
      case v_attempt:
        if (sp.end == ending::clean) note(doubt, "send never finished");
        break;
      default:
        if (got != 0) note(phantom, "received but never sent");
        break;
    }
  }
  if (lost <= may_lose) lost = 0;  // taken along by receivers unwound mid-receive
  if (lost + dup + phantom + rejected_got + doubt != 0) {
    fail.add("values: " + std::to_string(lost) + " lost, " + std::to_string(dup) + " duplicated, " +
             std::to_string(phantom) + " never sent, " + std::to_string(rejected_got) +
             " failed-but-received, " + std::to_string(doubt) + " unfinished (first: " + first +
             ")");
  }
  return fail.text;
}

}  // namespace proptest
