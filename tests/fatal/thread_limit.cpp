// Must die with the thread-limit message: more fibers stuck in blocking
// calls than WEFT_MAX_THREADS (set to 20 by the test) allows threads.
#include <unistd.h>

#include <cstdio>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::wait_group wg;
        wg.add(100);
        for (int i = 0; i < 100; ++i) {
          weft::go([&] {
            weft::blocking([] { ::sleep(5); });
            wg.done();
          });
        }
        wg.wait();
      },
      o);
  std::puts("not reached");
}
