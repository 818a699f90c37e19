// Must die with a report: a fiber swallows the shutdown unwind forever.
#include <chrono>
#include <cstdio>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        weft::go([] {
          for (;;) {
            try {
              weft::sleep_for(std::chrono::hours(1));
            } catch (...) {
              // swallowed: wrong
            }
          }
        });
        weft::yield();
      },
      o);
  std::puts("not reached");
}
