// Must die with weft's overflow report when the overflowing fiber's stack
// has no guard page of its own: enough fibers are parked first to use up the
// guard-page budget (a quarter of vm.max_map_count), so the next stacks come
// from canary-protected slabs.
#include <cstdio>
#include <weft/weft.hpp>

namespace {
// Frames of ~2 KiB: the recursion crosses the neighbouring stacks down to
// the slab's guard page (at most 36 MiB) in under 20,000 calls. TSan keeps
// a shadow call stack per fiber that ends (with a crash inside TSan, before
// our handler can tell what happened) after some 200,000 frames, so small
// frames would not do. The asm makes `pad` escape, or clang shrinks it to
// the one byte used. Every call pushes its return address, less than a page
// below the previous one: no frame can step over the guard page.
[[gnu::noinline]] int recurse(int depth) {
  char pad[2048];
  pad[0] = static_cast<char>(depth);
  asm volatile("" : : "r"(pad) : "memory");
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
        // Each fiber counted itself while holding mu and releases it only
        // by parking in cv.wait: once main holds mu, every one of them is
        // parked, so the overflow below tramples only parked stacks (with a
        // second worker, which sysmon lends if a fiber looks like a hog, a
        // fiber still on its way into cv.wait would crash on its trampled
        // stack instead of this report appearing).
        { std::lock_guard<weft::mutex> lk(mu); }
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
