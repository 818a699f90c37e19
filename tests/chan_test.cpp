// chan_test.cpp: channels (weft/chan.hpp): Go's semantics, thread interop,
// shutdown unwinding, and the classic channel programs.

#include <algorithm>
#include <atomic>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "chan_helpers.hpp"

using namespace std::chrono_literals;

TEST_SUITE_BEGIN("chan");

TEST_CASE("unbuffered send completes only after a receiver has taken the value") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c;
    std::atomic<bool> sent{false};
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      c.send(7);
      sent = true;
      wg.done();
    });
    test::await_waiting(c, 1, true);
    weft::sleep_for(2ms);  // probe: the sender stays blocked
    CHECK_FALSE(sent.load());
    CHECK(c.size() == 0);
    CHECK(c.recv() == 7);
    wg.wait();
    CHECK(sent.load());
  });
}

TEST_CASE("buffered values are received in the order their sends completed") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c(100);
    for (int i = 0; i < 100; ++i) c.send(i);
    CHECK(c.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(c.recv() == i);
    CHECK(c.size() == 0);
    // Wrap around the ring several times with a partly full buffer.
    weft::chan<int> r(3);
    int next_in = 0, next_out = 0;
    r.send(next_in++);
    for (int round = 0; round < 50; ++round) {
      r.send(next_in++);
      r.send(next_in++);  // full
      CHECK(r.size() == 3);
      CHECK(r.recv() == next_out++);
      CHECK(r.recv() == next_out++);
    }
    CHECK(r.recv() == next_out++);
    CHECK(next_out == next_in);
  });
}

TEST_CASE("blocked receivers are served in arrival order") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 4}) {
      weft::chan<int> c(cap);
      constexpr int n = 6;
      std::vector<int> got(n, -1);
      weft::wait_group wg;
      wg.add(n);
      for (int i = 0; i < n; ++i) {
        weft::go([&, i] {
          got[i] = *c.recv();
          wg.done();
        });
        test::await_waiting(c, i + 1, false);
      }
      for (int v = 0; v < n; ++v) c.send(v * 10);
      wg.wait();
      for (int i = 0; i < n; ++i) CHECK(got[i] == i * 10);
    }
  });
}

TEST_CASE("blocked senders are served in arrival order, after the buffered values") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 2}) {
      weft::chan<int> c(cap);
      std::vector<int> expected;
      for (std::size_t i = 0; i < cap; ++i) {
        c.send(100 + static_cast<int>(i));
        expected.push_back(100 + static_cast<int>(i));
      }
      constexpr int n = 6;
      weft::wait_group wg;
      wg.add(n);
      for (int i = 0; i < n; ++i) {
        weft::go([&, i] {
          c.send(i);
          wg.done();
        });
        test::await_waiting(c, i + 1, true);
        expected.push_back(i);
      }
      CHECK(c.size() == cap);
      std::vector<int> got;
      for (std::size_t k = 0; k < expected.size(); ++k) got.push_back(*c.recv());
      wg.wait();
      CHECK(got == expected);
      CHECK(c.size() == 0);
    }
  });
}

TEST_CASE("a send to a waiting receiver runs that receiver next on the sender's worker") {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        weft::chan<int> c;
        std::vector<std::string> log;
        weft::wait_group wg;
        wg.add(2);
        weft::go([&] {
          const int v = *c.recv();
          log.push_back("receiver " + std::to_string(v));
          wg.done();
        });
        test::await_waiting(c, 1, false);
        weft::go([&] {  // runnable before the send
          log.push_back("bystander");
          wg.done();
        });
        c.send(5);
        wg.wait();
        CHECK(log == std::vector<std::string>{"receiver 5", "bystander"});
      },
      o);
  test::check_teardown();
}

TEST_CASE("close wakes every blocked receiver with nullopt") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 8}) {
      weft::chan<int> c(cap);
      constexpr int n = 10;
      std::atomic<int> nullopts{0};
      weft::wait_group wg;
      wg.add(n);
      for (int i = 0; i < n; ++i) {
        weft::go([&] {
          if (!c.recv().has_value()) nullopts.fetch_add(1);
          wg.done();
        });
      }
      test::await_waiting(c, n, false);
      c.close();
      wg.wait();
      CHECK(nullopts.load() == n);
      CHECK(test::waiting(c, false) == 0);
    }
  });
}

TEST_CASE("close makes every blocked sender throw closed_channel") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 1}) {
      weft::chan<int> c(cap);
      if (cap == 1) c.send(-1);
      constexpr int n = 5;
      std::atomic<int> thrown{0};
      weft::wait_group wg;
      wg.add(n);
      for (int i = 0; i < n; ++i) {
        weft::go([&, i] {
          try {
            c.send(i);
          } catch (const weft::closed_channel& e) {
            if (std::string(e.what()) == "send on closed channel") thrown.fetch_add(1);
          }
          wg.done();
        });
      }
      test::await_waiting(c, n, true);
      c.close();
      wg.wait();
      CHECK(thrown.load() == n);
      if (cap == 1) CHECK(c.recv() == -1);  // the buffered value survives the close
      CHECK_FALSE(c.recv().has_value());
    }
  });
}

TEST_CASE("misuse throws closed_channel with Go's messages") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c(1);
    c.close();
    CHECK_THROWS_WITH_AS(c.send(1), "send on closed channel", weft::closed_channel);
    CHECK_THROWS_WITH_AS(c.close(), "close of closed channel", weft::closed_channel);
    CHECK_THROWS_WITH_AS(weft::chan<int>::nil().close(), "close of nil channel",
                         weft::closed_channel);
    weft::chan<int> moved(2);
    weft::chan<int> other(std::move(moved));
    // NOLINTNEXTLINE(bugprone-use-after-move): a moved-from chan is nil, the case under test
    CHECK_THROWS_WITH_AS(moved.close(), "close of nil channel", weft::closed_channel);
    CHECK_NOTHROW(other.close());
    // closed_channel is a logic_error, as weft/chan.hpp says.
    CHECK_THROWS_AS(c.send(2), std::logic_error);
  });
}

TEST_CASE("receive from a closed channel drains the buffer first, then yields nullopt") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c(3);
    c.send(1);
    c.send(2);
    c.send(3);
    c.close();
    CHECK(c.size() == 3);
    CHECK(c.recv() == 1);
    CHECK(c.recv() == 2);
    CHECK(c.recv() == 3);
    CHECK_FALSE(c.recv().has_value());
    CHECK_FALSE(c.recv().has_value());
    CHECK(c.size() == 0);
  });
}

TEST_CASE("move-only values travel through unbuffered and buffered channels") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 3}) {
      weft::chan<std::unique_ptr<int>> c(cap);
      weft::go([c] {
        for (int i = 0; i < 20; ++i) c.send(std::make_unique<int>(i));
        c.close();
      });
      int expect = 0;
      for (std::unique_ptr<int> p : c) {
        REQUIRE(p != nullptr);
        CHECK(*p == expect++);
      }
      CHECK(expect == 20);
    }
  });
}

TEST_CASE("values without a default constructor or assignment travel through channels") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 2}) {
      weft::chan<test::no_default> c(cap);
      weft::go([c] {
        for (int i = 0; i < 10; ++i) c.send(test::no_default(i));
        c.close();
      });
      int expect = 0;
      for (auto&& v : c) CHECK(v.v == expect++);
      CHECK(expect == 10);
    }
  });
}

TEST_CASE("values whose move may throw are kept boxed and still arrive in order") {
  static_assert(weft::detail::chan_traits<test::throwing_move>::boxed);
  static_assert(!weft::detail::chan_traits<int>::boxed);
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 2}) {
      weft::chan<test::throwing_move> c(cap);
      weft::go([c] {
        for (int i = 0; i < 10; ++i) c.send(test::throwing_move(i));
        c.close();
      });
      int expect = 0;
      for (auto&& v : c) CHECK(v.v == expect++);
      CHECK(expect == 10);
    }
    // A move that throws on the way in leaves the channel untouched.
    weft::chan<test::throwing_move> b(1);
    CHECK_THROWS_WITH(b.send(test::throwing_move(1, true)), "poisoned move");
    CHECK(b.size() == 0);
    b.send(test::throwing_move(2));
    CHECK(b.recv()->v == 2);
  });
}

TEST_CASE("channels destroy exactly the values they still hold") {
  test::counted::live = 0;
  test::for_each_workers([](unsigned) {
    {
      weft::chan<test::counted> c(5);
      for (int i = 0; i < 4; ++i) c.send(test::counted(i));
      CHECK(test::counted::live.load() == 4);
      CHECK(c.recv()->v == 0);
      CHECK(test::counted::live.load() == 3);
    }
    CHECK(test::counted::live.load() == 0);
  });
}

TEST_CASE("range-for receives every value until the channel is closed and drained") {
  test::for_each_workers([](unsigned) {
    for (std::size_t cap : {0, 7}) {
      weft::chan<int> c(cap);
      weft::go([c] {
        for (int i = 1; i <= 1000; ++i) c.send(i);
        c.close();
      });
      long sum = 0;
      int n = 0;
      for (int v : c) {
        sum += v;
        ++n;
      }
      CHECK(n == 1000);
      CHECK(sum == 1000L * 1001 / 2);
      // A closed, drained channel ends a range-for at once.
      for (int v : c) CHECK(v < 0);
    }
  });
}

TEST_CASE("size and capacity describe the buffer, the nil channel has neither") {
  weft::chan<int> u;
  CHECK(u.capacity() == 0);
  CHECK(u.size() == 0);
  weft::chan<int> z(0);
  CHECK(z.capacity() == 0);
  weft::chan<int> b(16);
  CHECK(b.capacity() == 16);
  b.send(1);
  b.send(2);
  CHECK(b.size() == 2);
  CHECK(weft::chan<int>::nil().capacity() == 0);
  CHECK(weft::chan<int>::nil().size() == 0);
  CHECK_THROWS_AS(weft::chan<int>(std::size_t{1} << 62), std::length_error);
}

TEST_CASE("copies of a chan are one channel, a moved-from chan is nil") {
  weft::chan<int> a(2);
  weft::chan<int> b = a;
  CHECK(a == b);
  b.send(4);
  CHECK(a.size() == 1);
  CHECK(a.recv() == 4);
  weft::chan<int> c = std::move(b);
  CHECK(c == a);
  CHECK(b == weft::chan<int>::nil());
  CHECK_FALSE(a == weft::chan<int>(2));
  c = weft::chan<int>::nil();
  CHECK(c == weft::chan<int>::nil());
  CHECK(a.capacity() == 2);  // a still refers to the channel
}

TEST_CASE("send and receive on a nil channel block until shutdown unwinds them") {
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
          weft::chan<int> nil = weft::chan<int>::nil();
          weft::go([&, nil] {
            on_unwind u{unwound};
            nil.send(1);
            reached.fetch_add(1);
          });
          weft::go([&, nil] {
            on_unwind u{unwound};
            (void)nil.recv();
            reached.fetch_add(1);
          });
          weft::go([&, nil] {
            on_unwind u{unwound};
            for (int v : nil) (void)v;
            reached.fetch_add(1);
          });
          test::await_parked(3);  // all blocked (a fiber that never started is not unwound)
          weft::sleep_for(5ms);   // probe: none of them returns
        },
        o);
    test::check_teardown();
    CHECK(reached.load() == 0);
    CHECK(unwound.load() == 3);
    CHECK(weft::detail::last_teardown().fibers_unwound == 3);
  }
}

TEST_CASE("fibers parked on channels at shutdown are unwound and free the channels") {
  test::counted::live = 0;
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          // Each channel's only handles live in the fibers parked on it.
          {
            weft::chan<test::counted> full(2);
            full.send(test::counted(1));
            full.send(test::counted(2));
            weft::go([full] { full.send(test::counted(3)); });
            test::await_waiting(full, 1, true);
          }
          {
            weft::chan<test::counted> unbuf;
            weft::go([unbuf] { (void)unbuf.recv(); });
            weft::go([unbuf] { (void)unbuf.recv(); });
            test::await_waiting(unbuf, 2, false);
          }
          {
            weft::chan<test::counted> unbuf;
            weft::go([unbuf] { unbuf.send(test::counted(4)); });
            test::await_waiting(unbuf, 1, true);
          }
          CHECK(test::counted::live.load() == 4);
        },
        o);
    test::check_teardown();
    CHECK(weft::detail::last_teardown().fibers_unwound == 4);
    CHECK(test::counted::live.load() == 0);  // every channel (and value) was freed
  }
}

TEST_CASE("16 senders x 16 receivers x 100,000 values: none lost, none duplicated") {
  const std::uint64_t per = test::scaled(100000, 20);
  constexpr int senders = 16, receivers = 16;
  for (std::size_t cap : {0, 64}) {
    CAPTURE(cap);
    test::for_each_workers([&](unsigned) {
      const std::uint64_t total = per * senders;
      weft::chan<std::uint64_t> c(cap);
      test::seen_set seen(total);
      std::atomic<std::uint64_t> sum{0}, count{0}, bad{0};
      weft::wait_group sent, received;
      sent.add(senders);
      received.add(receivers);
      for (int r = 0; r < receivers; ++r) {
        weft::go([&] {
          std::uint64_t s = 0, n = 0, b = 0;
          for (std::uint64_t v : c) {
            if (!seen.mark(v)) ++b;
            s += v;
            ++n;
          }
          sum.fetch_add(s);
          count.fetch_add(n);
          bad.fetch_add(b);
          received.done();
        });
      }
      for (int k = 0; k < senders; ++k) {
        weft::go([&, k] {
          for (std::uint64_t i = 0; i < per; ++i) c.send(static_cast<std::uint64_t>(k) * per + i);
          sent.done();
        });
      }
      sent.wait();
      c.close();
      received.wait();
      CHECK(bad.load() == 0);
      CHECK(count.load() == total);
      CHECK(seen.count() == total);
      CHECK(sum.load() == total * (total - 1) / 2);
    });
  }
}

TEST_CASE("per-sender order holds with many senders and receivers") {
  // Values from one sender must be received in that sender's order even
  // when many receivers compete: record (sender, seq) and check each
  // receiver saw every sender's sequence increase.
  test::for_each_workers([](unsigned) {
    constexpr int senders = 4, receivers = 4;
    const int per = static_cast<int>(test::scaled(20000));
    weft::chan<std::pair<int, int>> c(8);
    std::atomic<int> violations{0}, count{0};
    weft::wait_group sent, received;
    sent.add(senders);
    received.add(receivers);
    for (int r = 0; r < receivers; ++r) {
      weft::go([&] {
        std::vector<int> last(senders, -1);
        for (auto [s, q] : c) {
          if (q <= last[s]) violations.fetch_add(1);
          last[s] = q;
          count.fetch_add(1);
        }
        received.done();
      });
    }
    for (int s = 0; s < senders; ++s) {
      weft::go([&, s] {
        for (int q = 0; q < per; ++q) c.send({s, q});
        sent.done();
      });
    }
    sent.wait();
    c.close();
    received.wait();
    CHECK(violations.load() == 0);
    CHECK(count.load() == senders * per);
  });
}

namespace {
// The concurrent prime sieve from the Go tour: a chain of filter fibers.
void sieve_filter(weft::chan<int> in, weft::chan<int> out, int prime) {
  for (;;) {
    const int v = *in.recv();
    if (v % prime != 0) out.send(v);
  }
}
}  // namespace

TEST_CASE("the concurrent prime sieve finds the first primes") {
  test::for_each_workers([](unsigned) {
    const int n = static_cast<int>(test::scaled(200, 4));
    std::vector<int> expected;
    for (int v = 2; static_cast<int>(expected.size()) < n; ++v) {
      bool prime = true;
      for (int d = 2; d * d <= v && prime; ++d) prime = v % d != 0;
      if (prime) expected.push_back(v);
    }
    weft::chan<int> ch;
    weft::go([ch] {
      for (int i = 2;; ++i) ch.send(i);
    });
    std::vector<int> primes;
    for (int i = 0; i < n; ++i) {
      const int prime = *ch.recv();
      primes.push_back(prime);
      weft::chan<int> next;
      weft::go(sieve_filter, ch, next, prime);
      ch = next;
    }
    CHECK(primes == expected);
    // The generator and every filter are still blocked: shutdown unwinds them.
  });
}

TEST_CASE("a pipeline with fan-out and fan-in delivers every result once") {
  test::for_each_workers([](unsigned) {
    const int n = static_cast<int>(test::scaled(20000));
    constexpr int workers = 8;
    weft::chan<int> jobs(16);
    weft::chan<long> results;
    weft::go([jobs, count = n] {
      for (int i = 0; i < count; ++i) jobs.send(i);
      jobs.close();
    });
    auto pending = std::make_shared<std::atomic<int>>(workers);
    for (int w = 0; w < workers; ++w) {
      weft::go([jobs, results, pending] {
        for (int v : jobs) results.send(static_cast<long>(v) * v);
        if (pending->fetch_sub(1) == 1) results.close();  // the last worker closes
      });
    }
    long sum = 0;
    int count = 0;
    for (long r : results) {
      sum += r;
      ++count;
    }
    long expected = 0;
    for (long i = 0; i < n; ++i) expected += i * i;
    CHECK(count == n);
    CHECK(sum == expected);
  });
}

TEST_CASE("a plain std::thread feeds fibers and fibers feed a plain std::thread") {
  test::for_each_workers([](unsigned) {
    const int n = static_cast<int>(test::scaled(20000));
    for (std::size_t cap : {0, 16}) {
      weft::chan<int> to_fibers(cap), to_thread(cap);
      weft::chan<long> thread_sum;
      // Thread -> fibers.
      std::thread producer([&] {
        for (int i = 0; i < n; ++i) to_fibers.send(i);
        to_fibers.close();
      });
      // Fibers -> thread.
      std::thread consumer([&] {
        long s = 0;
        for (int v : to_thread) s += v;
        thread_sum.send(s);  // a thread's send, received by the main fiber
      });
      std::atomic<long> fiber_sum{0};
      weft::wait_group wg;
      constexpr int fibers = 4;
      wg.add(fibers);
      for (int f = 0; f < fibers; ++f) {
        weft::go([&] {
          long s = 0;
          for (int v : to_fibers) {
            s += v;
            to_thread.send(v);
          }
          fiber_sum.fetch_add(s);
          wg.done();
        });
      }
      wg.wait();
      to_thread.close();
      const long from_thread = *thread_sum.recv();
      weft::blocking([&] {
        producer.join();
        consumer.join();
      });
      const long expected = static_cast<long>(n) * (n - 1) / 2;
      CHECK(fiber_sum.load() == expected);
      CHECK(from_thread == expected);
    }
  });
}

TEST_CASE("a thread blocked on a channel is woken by a fiber, and a fiber by a thread") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> to_thread, to_fiber;
    std::atomic<bool> thread_blocked{false};
    std::thread t([&] {
      thread_blocked = true;
      const int v = *to_thread.recv();  // blocks this thread until a fiber sends
      to_fiber.send(v + 1);             // blocks until the fiber receives
      to_thread.close();
    });
    test::await_waiting(to_thread, 1, false);
    CHECK(thread_blocked.load());
    to_thread.send(41);
    CHECK(to_fiber.recv() == 42);
    weft::blocking([&] { t.join(); });
    CHECK_FALSE(to_thread.recv().has_value());
  });
}

TEST_CASE("a fiber inside weft::blocking blocks its thread on a channel and is woken by a fiber") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> in, out;
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      // Inside blocking() the fiber is a plain thread to the channel: it
      // sleeps on a futex, and the runtime hands its run queue to another
      // worker, which runs the sender below.
      const int v = weft::blocking([&] { return *in.recv(); });
      out.send(v * 2);
      wg.done();
    });
    weft::go([in] { in.send(21); });  // by value: it may return after we do
    CHECK(out.recv() == 42);
    wg.wait();
  });
}

TEST_CASE("close from a plain thread wakes blocked fibers and threads alike") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> c;
    std::atomic<int> nullopts{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&] {
        if (!c.recv()) nullopts.fetch_add(1);
      });
    }
    weft::wait_group wg;
    wg.add(3);
    for (int i = 0; i < 3; ++i) {
      weft::go([&] {
        if (!c.recv()) nullopts.fetch_add(1);
        wg.done();
      });
    }
    test::await_waiting(c, 5, false);
    std::thread closer([&] { c.close(); });
    wg.wait();
    weft::blocking([&] {
      closer.join();
      for (auto& t : threads) t.join();
    });
    CHECK(nullopts.load() == 5);
  });
}

TEST_CASE("a channel outlives run(), works between runs from plain threads, and in a later run") {
  weft::chan<int> buffered(8);
  weft::chan<int> unbuffered;
  weft::options o;
  o.workers = 2;
  weft::run(
      [&] {
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          buffered.send(1);
          buffered.send(2);
          wg.done();
        });
        wg.wait();
      },
      o);
  test::check_teardown();
  CHECK(buffered.size() == 2);
  // Between runs: plain threads only.
  std::thread a([&] {
    unbuffered.send(buffered.recv().value() * 10);  // 10
    buffered.send(3);
  });
  std::thread b([&] { buffered.send(*unbuffered.recv() + 1); });  // 11
  a.join();
  b.join();
  CHECK(buffered.size() == 3);
  weft::run(
      [&] {
        std::vector<int> got;
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          for (int i = 0; i < 3; ++i) got.push_back(*buffered.recv());
          wg.done();
        });
        wg.wait();
        std::sort(got.begin(), got.end());
        CHECK(got == std::vector<int>{2, 3, 11});
        // And a handoff across the runtime boundary once more.
        weft::go([&] { unbuffered.send(99); });
        CHECK(unbuffered.recv() == 99);
      },
      o);
  test::check_teardown();
}

TEST_SUITE_END();
