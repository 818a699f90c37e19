// Must die with weft's overflow report: one frame larger than the stack.
// -fstack-clash-protection (part of weft's interface) probes it page by
// page, so it hits the guard page instead of jumping over it.
#include <cstdio>
#include <weft/weft.hpp>

namespace {
// Not instrumented by ASan, which would move the array to its heap-backed
// "fake stack" and so never overflow anything.
#if defined(__clang__)
#define NO_ASAN __attribute__((no_sanitize("address")))
#else
#define NO_ASAN
#endif
[[gnu::noinline]] NO_ASAN int big_frame(int x) {
  char buf[64 * 1024];
  asm volatile("" : : "r"(buf) : "memory");  // the whole array escapes: it must exist
  buf[x] = static_cast<char>(x);
  asm volatile("" : : "r"(buf) : "memory");
  return buf[x];
}
}  // namespace

int main() {
  weft::options o;
  o.workers = 1;
  o.stack_size = 16 * 1024;
  weft::run(
      [] {
        weft::wait_group wg;
        wg.add(1);
        weft::go([&] {
          big_frame(3);
          wg.done();
        });
        wg.wait();
      },
      o);
  std::puts("not reached");
}
