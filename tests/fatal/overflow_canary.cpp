// Must die with weft's overflow report when the overflowing fiber's stack
// has no guard page of its own: enough fibers are parked first to use up the
// guard-page budget (a quarter of vm.max_map_count), so the next stacks come
// from canary-protected slabs.
#include <cstdio>
#include <weft/weft.hpp>

namespace {
[[gnu::noinline]] int recurse(int depth) {
  volatile char pad[256];
  pad[0] = static_cast<char>(depth);
  return recurse(depth + 1) + pad[0];
}
}  // namespace

int main() {
  weft::options o;
  o.workers = 1;
  o.stack_size = 32 * 1024;
  weft::run(
      [] {
        weft::mutex mu;
        weft::condition_variable cv;
        weft::wait_group parked;
        constexpr int n = 20000;  // > 65530 / 8 guarded stacks
        parked.add(n);
        for (int i = 0; i < n; ++i) {
          weft::go([&] {
            std::unique_lock<weft::mutex> lk(mu);
            parked.done();
            cv.wait(lk);
          });
        }
        parked.wait();
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          recurse(0);
          wg.done();
        });
        wg.wait();
      },
      o);
  std::puts("not reached");
}
