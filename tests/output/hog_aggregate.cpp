// Three hogs started at one site: the first is reported as it happens, the
// other two are summed up in one line when the run ends.
#include <atomic>
#include <cstdio>
#include <weft/weft.hpp>

namespace {

// hog: spins with no scheduling point until the fiber queued behind it has
// run (sysmon must move that fiber and lend it a processor), then returns.
void start_hog(std::atomic<bool>& released, weft::wait_group& wg) {
  weft::go([&] {
    while (!released.load()) {
    }
    wg.done();
  });
}

}  // namespace

int main() {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        for (int i = 0; i < 3; ++i) {
          std::atomic<bool> released{false};
          weft::wait_group wg;
          wg.add(1);
          start_hog(released, wg);
          weft::yield();  // queued behind the hog until sysmon moves us
          released = true;
          wg.wait();
        }
      },
      o);
  std::fputs("hog aggregate test finished\n", stderr);
}
