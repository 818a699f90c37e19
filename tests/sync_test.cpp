// sync_test.cpp: mutex, condition_variable, wait_group.

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

TEST_SUITE_BEGIN("sync");

TEST_CASE("mutex serialises fibers: no increment is lost") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    long counter = 0;  // plain: only the lock protects it
    constexpr int fibers = 64, each = 2000;
    weft::wait_group wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; ++f) {
      weft::go([&] {
        for (int i = 0; i < each; ++i) {
          std::lock_guard<weft::mutex> lk(mu);
          ++counter;
          if (i % 64 == 0) weft::yield();  // hold the lock across a switch sometimes
        }
        wg.done();
      });
    }
    wg.wait();
    CHECK(counter == long{fibers} * each);
  });
}

TEST_CASE("mutex try_lock fails while held and succeeds once released") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    mu.lock();
    bool got = true;
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      got = mu.try_lock();
      wg.done();
    });
    wg.wait();
    CHECK_FALSE(got);
    mu.unlock();
    CHECK(mu.try_lock());
    mu.unlock();
  });
}

TEST_CASE("mutex hands the lock to waiters in arrival order") {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        weft::mutex mu;
        std::vector<int> order;
        mu.lock();
        weft::wait_group wg;
        wg.add(5);
        for (int i = 0; i < 5; ++i) {
          weft::go([&, i] {
            {
              std::lock_guard<weft::mutex> lk(mu);
              order.push_back(i);
            }
            wg.done();  // after the unlock: main may destroy mu once all are done
          });
          weft::yield();  // let it queue on the mutex before starting the next
        }
        mu.unlock();
        wg.wait();
        CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
      },
      o);
}

TEST_CASE("scoped_lock takes two weft mutexes without deadlock") {
  test::for_each_workers([](unsigned) {
    weft::mutex a, b;
    int x = 0;
    weft::wait_group wg;
    wg.add(20);
    for (int i = 0; i < 20; ++i) {
      weft::go([&, i] {
        for (int k = 0; k < 200; ++k) {
          if (i % 2 == 0) {
            std::scoped_lock lk(a, b);
            ++x;
          } else {
            std::scoped_lock lk(b, a);
            ++x;
          }
        }
        wg.done();
      });
    }
    wg.wait();
    CHECK(x == 4000);
  });
}

TEST_CASE("a plain thread and fibers share a weft::mutex") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    long counter = 0;
    std::thread t([&] {
      for (int i = 0; i < 20000; ++i) {
        std::lock_guard<weft::mutex> lk(mu);
        ++counter;
      }
    });
    weft::wait_group wg;
    wg.add(4);
    for (int f = 0; f < 4; ++f) {
      weft::go([&] {
        for (int i = 0; i < 5000; ++i) {
          std::lock_guard<weft::mutex> lk(mu);
          ++counter;
        }
        wg.done();
      });
    }
    wg.wait();
    t.join();
    CHECK(counter == 40000);
  });
}

TEST_CASE("condition_variable: producer/consumer passes every item exactly once") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable not_empty, not_full;
    std::vector<int> buf;
    constexpr std::size_t cap = 8;
    constexpr int producers = 4, consumers = 4, each = 2000;
    std::atomic<long> sum{0};
    std::atomic<int> received{0};
    weft::wait_group wg;
    wg.add(producers + consumers);
    for (int p = 0; p < producers; ++p) {
      weft::go([&, p] {
        for (int i = 1; i <= each; ++i) {
          std::unique_lock<weft::mutex> lk(mu);
          not_full.wait(lk, [&] { return buf.size() < cap; });
          buf.push_back(p * each + i);
          not_empty.notify_one();
        }
        wg.done();
      });
    }
    for (int c = 0; c < consumers; ++c) {
      weft::go([&] {
        for (int i = 0; i < each; ++i) {
          std::unique_lock<weft::mutex> lk(mu);
          not_empty.wait(lk, [&] { return !buf.empty(); });
          sum += buf.back();
          buf.pop_back();
          received++;
          not_full.notify_one();
        }
        wg.done();
      });
    }
    wg.wait();
    const long n = long{producers} * each;
    CHECK(received.load() == n);
    CHECK(sum.load() == n * (n + 1) / 2);
  });
}

TEST_CASE("condition_variable notify_all wakes every waiter") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable cv;
    bool ready = false;
    int waiting = 0, woke = 0;
    constexpr int n = 100;
    weft::wait_group wg;
    wg.add(n);
    for (int i = 0; i < n; ++i) {
      weft::go([&] {
        std::unique_lock<weft::mutex> lk(mu);
        ++waiting;
        cv.wait(lk, [&] { return ready; });
        ++woke;
        lk.unlock();  // before done(): main may destroy mu once all are done
        wg.done();
      });
    }
    for (;;) {
      std::lock_guard<weft::mutex> lk(mu);
      if (waiting == n) break;
      weft::yield();
    }
    {
      std::lock_guard<weft::mutex> lk(mu);
      ready = true;
    }
    cv.notify_all();
    wg.wait();
    CHECK(woke == n);
  });
}

TEST_CASE("condition_variable wait_for times out when nobody notifies, and not when notified") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable cv;
    std::unique_lock<weft::mutex> lk(mu);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(cv.wait_for(lk, std::chrono::milliseconds(20)) == std::cv_status::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(20));
    CHECK(lk.owns_lock());
    CHECK_FALSE(cv.wait_for(lk, std::chrono::milliseconds(5), [] { return false; }));

    bool flag = false;
    weft::go([&] {
      std::lock_guard<weft::mutex> g(mu);
      flag = true;
      cv.notify_one();
    });
    CHECK(cv.wait_for(lk, std::chrono::seconds(30), [&] { return flag; }));
    CHECK(cv.wait_until(lk, std::chrono::steady_clock::now() - std::chrono::seconds(1)) ==
          std::cv_status::timeout);
  });
}

TEST_CASE("condition_variable: many timed waiters racing with notifies lose nobody") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable cv;
    long tokens = 0;
    long consumed = 0;
    constexpr int waiters = 50, rounds = 200;
    weft::wait_group wg;
    wg.add(waiters);
    for (int i = 0; i < waiters; ++i) {
      weft::go([&] {
        for (int r = 0; r < rounds; ++r) {
          std::unique_lock<weft::mutex> lk(mu);
          while (tokens == 0) cv.wait_for(lk, std::chrono::microseconds(100 + r % 7));
          --tokens;
          ++consumed;
        }
        wg.done();
      });
    }
    for (int i = 0; i < waiters * rounds; ++i) {
      std::lock_guard<weft::mutex> lk(mu);
      ++tokens;
      cv.notify_one();
    }
    wg.wait();
    CHECK(consumed == long{waiters} * rounds);
  });
}

TEST_CASE("a plain thread waits on a condition_variable that a fiber notifies") {
  test::for_each_workers([](unsigned) {
    weft::mutex mu;
    weft::condition_variable cv;
    bool done = false;
    std::atomic<bool> timed_out{false};
    std::thread t([&] {
      std::unique_lock<weft::mutex> lk(mu);
      // Nobody notifies before this returns: the fiber waits for timed_out.
      timed_out = !cv.wait_for(lk, std::chrono::milliseconds(5), [&] { return done; });
      cv.wait(lk, [&] { return done; });
    });
    while (!timed_out.load()) weft::sleep_for(std::chrono::milliseconds(1));
    {
      std::lock_guard<weft::mutex> lk(mu);
      done = true;
    }
    cv.notify_all();
    t.join();
    CHECK(timed_out.load());
  });
}

TEST_CASE("wait_group waits for every done and a negative counter throws") {
  test::for_each_workers([](unsigned) {
    weft::wait_group wg;
    std::atomic<int> n{0};
    constexpr int fibers = 500;
    wg.add(fibers);
    for (int i = 0; i < fibers; ++i) {
      weft::go([&] {
        weft::yield();
        n++;
        wg.done();
      });
    }
    // Several waiters at once.
    weft::wait_group waiters_done;
    waiters_done.add(3);
    std::atomic<int> saw_all{0};
    for (int i = 0; i < 3; ++i) {
      weft::go([&] {
        wg.wait();
        if (n.load() == fibers) saw_all++;
        waiters_done.done();
      });
    }
    wg.wait();
    CHECK(n.load() == fibers);
    waiters_done.wait();
    CHECK(saw_all.load() == 3);
    CHECK_THROWS_AS(wg.done(), std::logic_error);
    wg.add(1);  // the failed done() left the counter at zero
    wg.done();
    wg.wait();
  });
}

TEST_SUITE_END();
