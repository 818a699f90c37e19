// select_test.cpp: select (weft/select.hpp).

#include <array>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "chan_helpers.hpp"

using namespace std::chrono_literals;

TEST_SUITE_BEGIN("select");

TEST_CASE("select performs the one ready case, runs its handler and returns its index") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> a(1), b(1);
    weft::chan<std::string> out(1);
    b.send(5);
    int got = 0;
    bool sent = false;
    std::size_t i = weft::select(weft::recv_case(a, [&](std::optional<int> v) { got = -1; }),
                                 weft::recv_case(b, [&](std::optional<int> v) { got = *v; }));
    CHECK(i == 1);
    CHECK(got == 5);
    CHECK(b.size() == 0);
    // Only the send can proceed (a and b are empty).
    i = weft::select(weft::recv_case(a), weft::recv_case(b),
                     weft::send_case(out, "x", [&] { sent = true; }));
    CHECK(i == 2);
    CHECK(sent);
    CHECK(out.recv() == "x");
  });
}

TEST_CASE("select chooses uniformly among ready cases (30,000 selects, 3 ready channels)") {
  test::for_each_workers([](unsigned) {
    // Buffered channels kept non-empty, and a closed one: always ready.
    weft::chan<int> a(4), b(4), closed(1);
    closed.close();
    a.send(0);
    b.send(0);
    std::array<int, 4> counts{};
    constexpr int n = 30000;
    for (int k = 0; k < n; ++k) {
      const std::size_t i = weft::select(
          weft::recv_case(a, [&](std::optional<int>) { a.send(0); }),
          weft::recv_case(weft::chan<int>::nil()),  // never ready: never chosen
          weft::recv_case(b, [&](std::optional<int>) { b.send(0); }),
          weft::recv_case(closed, [](std::optional<int> v) { CHECK_FALSE(v.has_value()); }));
      ++counts[i];
    }
    CHECK(counts[1] == 0);
    for (std::size_t i : {0, 2, 3}) {
      // Expected 10,000 each; the standard deviation is about 82.
      CHECK_MESSAGE(counts[i] > 9500, "case ", i, " chosen ", counts[i], " times");
      CHECK_MESSAGE(counts[i] < 10500, "case ", i, " chosen ", counts[i], " times");
    }
  });
}

TEST_CASE("select is uniform between two cases on the same channel and a send case") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c(2);
    c.send(1);
    std::array<int, 3> counts{};
    constexpr int n = 30000;
    for (int k = 0; k < n; ++k) {
      // c holds one value and has room for one more: all three cases ready.
      const std::size_t i = weft::select(weft::recv_case(c, [&](std::optional<int>) { c.send(1); }),
                                         weft::recv_case(c, [&](std::optional<int>) { c.send(1); }),
                                         weft::send_case(c, 2, [&] { (void)c.recv(); }));
      ++counts[i];
      REQUIRE(c.size() == 1);
    }
    for (int x : counts) {
      CHECK_MESSAGE(x > 9500, "chosen ", x, " times");
      CHECK_MESSAGE(x < 10500, "chosen ", x, " times");
    }
  });
}

TEST_CASE("select with default returns the default's index when nothing is ready") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> a, b(1), full(1);
    full.send(1);
    bool ran = false;
    const std::size_t i = weft::select(weft::recv_case(a), weft::recv_case(b),
                                       weft::default_case([&] { ran = true; }),
                                       weft::send_case(full, 2), weft::send_case(a, 3));
    CHECK(i == 2);
    CHECK(ran);
    CHECK(full.size() == 1);
    CHECK(test::waiting(a, false) == 0);
    CHECK(test::waiting(a, true) == 0);
    // Single case + default: the lock-free fast path.
    CHECK(weft::select(weft::recv_case(a), weft::default_case()) == 1);
    CHECK(weft::select(weft::default_case(), weft::send_case(full, 1)) == 0);
    // Only a default.
    CHECK(weft::select(weft::default_case()) == 0);
    // A ready case beats the default.
    b.send(9);
    CHECK(weft::select(weft::default_case(), weft::recv_case(b)) == 1);
  });
}

TEST_CASE("select with default takes a case that is ready, also a blocked sender's") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c;
    weft::go([c] { c.send(7); });
    test::await_waiting(c, 1, true);
    int got = 0;
    CHECK(weft::select(weft::recv_case(c, [&](std::optional<int> v) { got = *v; }),
                       weft::default_case()) == 0);
    CHECK(got == 7);
    // And a blocked receiver takes a send_case with default.
    weft::chan<int> r;
    std::atomic<int> received{0};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      received = *r.recv();
      wg.done();
    });
    test::await_waiting(r, 1, false);
    CHECK(weft::select(weft::default_case(), weft::send_case(r, 8)) == 1);
    wg.wait();
    CHECK(received.load() == 8);
  });
}

TEST_CASE("select blocks until a case can proceed, then takes exactly that one") {
  test::for_each_workers([](unsigned) {
    for (int which = 0; which < 3; ++which) {
      weft::chan<int> a, b, c;
      std::atomic<int> got{-1};
      std::atomic<std::size_t> index{99};
      weft::wait_group wg;
      wg.add(1);
      weft::go([&] {
        index = weft::select(weft::recv_case(a, [&](std::optional<int> v) { got = *v; }),
                             weft::recv_case(b, [&](std::optional<int> v) { got = *v; }),
                             weft::send_case(c, 100));
        wg.done();
      });
      test::await_waiting(a, 1, false);
      test::await_waiting(c, 1, true);
      weft::sleep_for(1ms);  // probe: still blocked
      CHECK(index.load() == 99);
      if (which == 0) a.send(10);
      if (which == 1) b.send(11);
      if (which == 2) CHECK(c.recv() == 100);
      wg.wait();
      CHECK(index.load() == static_cast<std::size_t>(which));
      if (which < 2) CHECK(got.load() == 10 + which);
      // The losers were dequeued: nothing of the select remains anywhere.
      CHECK(test::waiting(a, false) == 0);
      CHECK(test::waiting(b, false) == 0);
      CHECK(test::waiting(c, true) == 0);
    }
  });
}

TEST_CASE("after a select returns, its other cases take nothing more") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> a, b;
    std::atomic<int> select_got{0};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      weft::select(weft::recv_case(a, [&](std::optional<int> v) { select_got = *v; }),
                   weft::recv_case(b, [&](std::optional<int> v) { select_got = 1000 + *v; }));
      wg.done();
    });
    test::await_waiting(b, 1, false);
    a.send(1);
    wg.wait();
    CHECK(test::waiting(a, false) == 0);
    CHECK(test::waiting(b, false) == 0);  // the losing node was dequeued
    // A plain receiver on b now gets b's value, not the finished select.
    weft::go([b] { b.send(2); });
    CHECK(b.recv() == 2);
    CHECK(select_got.load() == 1);
  });
}

TEST_CASE("the first of many wakers wins a blocked select, the others wait for a receiver") {
  test::for_each_workers([](unsigned) {
    const int rounds = static_cast<int>(test::scaled(2000));
    constexpr int k = 4;
    std::array<weft::chan<int>, k> cs;
    std::atomic<long> delivered{0};
    weft::wait_group wg;
    wg.add(k);
    // Each sender sends `rounds` values; one selecting fiber takes them all.
    for (int s = 0; s < k; ++s) {
      weft::go([&, s] {
        for (int r = 0; r < rounds; ++r) cs[s].send(r);
        wg.done();
      });
    }
    std::vector<long> per(k, 0);
    test::seen_set seen(static_cast<std::size_t>(rounds) * k);
    int dups = 0;
    for (int n = 0; n < rounds * k; ++n) {
      weft::select(
          weft::recv_case(cs[0], [&](std::optional<int> v) { dups += !seen.mark(*v * k + 0); }),
          weft::recv_case(cs[1], [&](std::optional<int> v) { dups += !seen.mark(*v * k + 1); }),
          weft::recv_case(cs[2], [&](std::optional<int> v) { dups += !seen.mark(*v * k + 2); }),
          weft::recv_case(cs[3], [&](std::optional<int> v) { dups += !seen.mark(*v * k + 3); }));
      delivered.fetch_add(1);
    }
    wg.wait();
    CHECK(dups == 0);
    CHECK(seen.count() == static_cast<std::size_t>(rounds) * k);
    for (auto& c : cs) CHECK(test::waiting(c, false) == 0);
  });
}

TEST_CASE("a select woken while its park is still releasing its channels is not disturbed") {
  // Selectors block on eight channels again and again while senders on
  // other workers make them ready the moment a first lock is released; the
  // park's release must not read a selector's frame after that (select.cpp
  // S3). Before that rule, the weft-bench select workload crashed in a
  // third of its runs.
  test::for_each_workers([](unsigned) {
    constexpr int k = 8, selectors = 4;
    const int rounds = static_cast<int>(test::scaled(10000));
    std::array<weft::chan<int>, k> cs;
    std::atomic<long> sum{0};
    weft::wait_group wg;
    wg.add(k + selectors);
    for (int s = 0; s < k; ++s) {
      weft::go([&, s] {
        for (int r = 0; r < rounds * selectors; ++r) cs[s].send(1);
        wg.done();
      });
    }
    for (int f = 0; f < selectors; ++f) {
      weft::go([&] {
        const auto h = [&](std::optional<int> v) { sum.fetch_add(*v, std::memory_order_relaxed); };
        for (int n = 0; n < rounds * k; ++n) {
          weft::select(weft::recv_case(cs[0], h), weft::recv_case(cs[1], h),
                       weft::recv_case(cs[2], h), weft::recv_case(cs[3], h),
                       weft::recv_case(cs[4], h), weft::recv_case(cs[5], h),
                       weft::recv_case(cs[6], h), weft::recv_case(cs[7], h),
                       // A channel freed right after each select: a late
                       // release touching it is a use after free (ASan).
                       weft::recv_case(weft::chan<int>()));
        }
        wg.done();
      });
    }
    wg.wait();
    CHECK(sum.load() == static_cast<long>(rounds) * k * selectors);
  });
}

TEST_CASE("many selects on shared channels: no value lost, none duplicated") {
  // Selecting receivers compete with plain receivers on two channels, and
  // selecting senders with plain senders; every value is seen exactly once.
  test::for_each_workers([](unsigned) {
    using u64 = std::uint64_t;
    const u64 per = test::scaled(20000);
    constexpr int senders = 4, selectors = 4;
    const u64 total = per * senders;
    weft::chan<u64> a, b(3);
    test::seen_set seen(total);
    std::atomic<u64> bad{0};
    const auto mark = [&](u64 v) {
      if (!seen.mark(v)) bad.fetch_add(1);
    };
    weft::wait_group sent, received;
    sent.add(senders);
    for (int s = 0; s < senders; ++s) {
      weft::go([&, s] {
        for (u64 i = 0; i < per; ++i) {
          const u64 v = static_cast<u64>(s) * per + i;
          if (s % 2 == 0) {
            (i % 2 == 0 ? a : b).send(v);  // plain sends
          } else {
            weft::select(weft::send_case(a, v), weft::send_case(b, v));
          }
        }
        sent.done();
      });
    }
    received.add(selectors + 2);
    for (int k = 0; k < selectors; ++k) {
      weft::go([&] {
        weft::chan<u64> la = a, lb = b;
        while (!(la == weft::chan<u64>::nil() && lb == weft::chan<u64>::nil())) {
          weft::select(weft::recv_case(la,
                                       [&](std::optional<u64> x) {
                                         if (x) {
                                           mark(*x);
                                         } else {
                                           la = weft::chan<u64>::nil();
                                         }
                                       }),
                       weft::recv_case(lb, [&](std::optional<u64> x) {
                         if (x) {
                           mark(*x);
                         } else {
                           lb = weft::chan<u64>::nil();
                         }
                       }));
        }
        received.done();
      });
    }
    for (auto* c : {&a, &b}) {
      weft::go([&, c] {
        for (u64 v : *c) mark(v);
        received.done();
      });
    }
    sent.wait();
    a.close();
    b.close();
    received.wait();
    CHECK(bad.load() == 0);
    CHECK(seen.count() == total);
  });
}

TEST_CASE("nil channels are never ready in select") {
  test::for_each_workers([](unsigned) {
    auto nil = weft::chan<int>::nil();
    weft::chan<int> c(1);
    c.send(3);
    for (int k = 0; k < 100; ++k) {
      const std::size_t i =
          weft::select(weft::recv_case(nil), weft::send_case(nil, 1),
                       weft::recv_case(c, [&](std::optional<int>) { c.send(3); }));
      CHECK(i == 2);
    }
    CHECK(weft::select(weft::recv_case(nil), weft::send_case(nil, 1), weft::default_case()) == 2);
  });
}

TEST_CASE("select with no cases, or only nil channels, blocks until shutdown unwinds it") {
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    std::atomic<int> reached{0}, unwound{0};
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          struct on_unwind {
            std::atomic<int>& n;
            ~on_unwind() { n.fetch_add(1); }
          };
          weft::go([&] {
            on_unwind u{unwound};
            weft::select();
            reached.fetch_add(1);
          });
          weft::go([&] {
            on_unwind u{unwound};
            weft::select(weft::recv_case(weft::chan<int>::nil()),
                         weft::send_case(weft::chan<int>::nil(), 1));
            reached.fetch_add(1);
          });
          test::await_parked(2);  // both blocked (a fiber that never started is not unwound)
          weft::sleep_for(5ms);   // probe: neither returns
        },
        o);
    test::check_teardown();
    CHECK(reached.load() == 0);
    CHECK(unwound.load() == 2);
  }
}

TEST_CASE("fibers blocked in select at shutdown are unwound and leave their channels clean") {
  test::counted::live = 0;
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    weft::chan<test::counted> in, out;  // outlive the run
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          weft::chan<test::counted> only_theirs(1);
          only_theirs.send(test::counted(0));  // full: a send_case blocks
          for (int k = 0; k < 3; ++k) {
            weft::go([in, out, only_theirs] {
              weft::select(weft::recv_case(in), weft::send_case(only_theirs, test::counted(1)),
                           weft::send_case(out, test::counted(2)),
                           weft::recv_case(weft::after(1h)));
            });
          }
          test::await_waiting(in, 3, false);
          test::await_waiting(out, 3, true);
          test::await_waiting(only_theirs, 3, true);
        },
        o);
    test::check_teardown();
    CHECK(weft::detail::last_teardown().fibers_unwound == 3);
    // The three after(1h) timers (batched, perhaps into one) went with their
    // channels' last handles as the selects unwound, or were disposed;
    // check_teardown found none left.
    // The unwound selects dequeued themselves from the surviving channels.
    CHECK(test::waiting(in, false) == 0);
    CHECK(test::waiting(out, true) == 0);
    CHECK(test::counted::live.load() == 0);
  }
}

TEST_CASE("send_case copies an lvalue, moves an rvalue and converts to T") {
  test::for_each_workers([](unsigned) {
    weft::chan<std::string> strings(3);
    std::string lv = "lvalue";
    std::string rv = "rvalue";
    weft::select(weft::send_case(strings, lv));
    CHECK(lv == "lvalue");  // copied
    weft::select(weft::send_case(strings, std::move(rv)));
    // NOLINTNEXTLINE(bugprone-use-after-move): the test is that send_case moved from rv
    CHECK(rv.empty());  // moved (libstdc++ leaves a moved-from string empty)
    weft::select(weft::send_case(strings, "x"));  // const char[2] -> std::string
    CHECK(strings.recv() == "lvalue");
    CHECK(strings.recv() == "rvalue");
    CHECK(strings.recv() == "x");
    // Move-only values through send_case and recv_case.
    weft::chan<std::unique_ptr<int>> ptrs(1);
    weft::select(weft::send_case(ptrs, std::make_unique<int>(6)));
    std::unique_ptr<int> got;
    weft::select(
        weft::recv_case(ptrs, [&](std::optional<std::unique_ptr<int>> v) { got = std::move(*v); }));
    REQUIRE(got != nullptr);
    CHECK(*got == 6);
  });
}

TEST_CASE("the value of a send_case that is not chosen is destroyed unsent") {
  test::counted::live = 0;
  test::for_each_workers([](unsigned) {
    weft::chan<test::counted> full(1), ready(1);
    full.send(test::counted(0));
    const std::size_t i = weft::select(weft::send_case(full, test::counted(1)),
                                       weft::send_case(ready, test::counted(2)));
    CHECK(i == 1);
    CHECK(test::counted::live.load() == 2);  // one in each channel; case 0's value is gone
    CHECK(full.recv()->v == 0);
    CHECK(ready.recv()->v == 2);
    CHECK(test::counted::live.load() == 0);
  });
}

TEST_CASE(
    "a chosen send_case on a closed channel throws closed_channel, a recv_case gets nullopt") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c;
    c.close();
    CHECK_THROWS_WITH_AS(weft::select(weft::send_case(c, 1)), "send on closed channel",
                         weft::closed_channel);
    bool got_nullopt = false;
    CHECK(weft::select(weft::recv_case(c, [&](std::optional<int> v) { got_nullopt = !v; })) == 0);
    CHECK(got_nullopt);
    // Closed while the select is blocked on it.
    weft::chan<int> d, e;
    std::atomic<int> outcome{0};
    weft::wait_group wg;
    wg.add(2);
    weft::go([&] {
      try {
        weft::select(weft::send_case(d, 1), weft::recv_case(weft::chan<int>::nil()));
      } catch (const weft::closed_channel& err) {
        if (std::string(err.what()) == "send on closed channel") outcome.fetch_add(1);
      }
      wg.done();
    });
    weft::go([&] {
      weft::select(weft::recv_case(e, [&](std::optional<int> v) {
        if (!v) outcome.fetch_add(10);
      }));
      wg.done();
    });
    test::await_waiting(d, 1, true);
    test::await_waiting(e, 1, false);
    d.close();
    e.close();
    wg.wait();
    CHECK(outcome.load() == 11);
  });
}

TEST_CASE("a select with a send and a receive case on one channel does not match itself") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c;
    std::atomic<std::size_t> index{99};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      index = weft::select(weft::send_case(c, 1), weft::recv_case(c));
      wg.done();
    });
    test::await_waiting(c, 1, true);
    test::await_waiting(c, 1, false);  // queued on both sides of c (C1's exception)
    weft::sleep_for(1ms);              // probe: it did not pair with itself
    CHECK(index.load() == 99);
    CHECK(c.recv() == 1);  // another party takes the send case
    wg.wait();
    CHECK(index.load() == 0);
    CHECK(test::waiting(c, false) == 0);
  });
}

TEST_CASE("select from a plain thread interoperates with fibers") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> a, b, results;
    const int n = static_cast<int>(test::scaled(2000));
    std::thread t([a, b, results]() mutable {
      long sum = 0;
      int closed = 0;
      while (closed < 2) {
        weft::select(weft::recv_case(a,
                                     [&](std::optional<int> v) {
                                       if (v) {
                                         sum += *v;
                                       } else {
                                         ++closed;
                                         a = weft::chan<int>::nil();
                                       }
                                     }),
                     weft::recv_case(b, [&](std::optional<int> v) {
                       if (v) {
                         sum += *v;
                       } else {
                         ++closed;
                         b = weft::chan<int>::nil();
                       }
                     }));
      }
      // A thread's select sends to a fiber, too.
      weft::select(weft::send_case(results, static_cast<int>(sum)));
    });
    weft::wait_group wg;
    wg.add(2);
    weft::go([&] {
      for (int i = 0; i < n; ++i) a.send(i);
      a.close();
      wg.done();
    });
    weft::go([&] {
      for (int i = 0; i < n; ++i) b.send(i);
      b.close();
      wg.done();
    });
    wg.wait();
    CHECK(results.recv() == n * (n - 1));
    weft::blocking([&] { t.join(); });
  });
}

TEST_SUITE_END();
