// Must die with weft's overflow report: unbounded recursion on a fiber.
#include <cstdio>
#include <weft/weft.hpp>

namespace {
[[gnu::noinline]] int recurse(int depth) {
  volatile char pad[128];
  pad[0] = static_cast<char>(depth);
  return recurse(depth + 1) + pad[0];
}
}  // namespace

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
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
