#include <doctest/doctest.h>
#include <weft/weft.hpp>
#include <atomic>

TEST_CASE("smoke") {
  for (unsigned w : {1u, 2u, 4u}) {
    CAPTURE(w);
    weft::options o; o.workers = w;
    std::atomic<int> n{0};
    int r = weft::run([&] {
      weft::wait_group wg;
      for (int i = 0; i < 1000; ++i) { wg.add(1); weft::go([&] { n++; weft::yield(); wg.done(); }); }
      wg.wait();
      return 42;
    }, o);
    CHECK(r == 42);
    CHECK(n == 1000);
  }
}
