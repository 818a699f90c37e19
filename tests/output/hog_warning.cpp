// Must print the one-time hog warning and then finish normally.
#include <chrono>
#include <cstdio>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        weft::go([] {
          const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
          while (std::chrono::steady_clock::now() < until) {
          }
        });
        weft::yield();  // queued behind the hog: sysmon moves us
      },
      o);
  std::fputs("hog test finished\n", stderr);
}
