// A program for the gdb extension's test: fibers parked in known functions,
// then main stops in reach_breakpoint() where gdb looks at them.
#include <chrono>
#include <cstdio>
#include <weft/weft.hpp>

weft::mutex g_mu;
weft::condition_variable g_cv;
bool g_go = false;

extern "C" [[gnu::noinline]] void parked_in_alpha() {
  std::unique_lock<weft::mutex> lk(g_mu);
  g_cv.wait(lk, [] { return g_go; });
  asm volatile("" ::: "memory");
}

extern "C" [[gnu::noinline]] void parked_in_beta() {
  weft::sleep_for(std::chrono::seconds(60));
  asm volatile("" ::: "memory");
}

extern "C" [[gnu::noinline]] void reach_breakpoint() { asm volatile("" ::: "memory"); }

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::go([] { parked_in_alpha(); });
        weft::go([] { parked_in_beta(); });
        weft::sleep_for(std::chrono::milliseconds(50));  // probe: both have parked
        reach_breakpoint();
        {
          std::lock_guard<weft::mutex> lk(g_mu);
          g_go = true;
        }
        g_cv.notify_all();
      },
      o);
  std::puts("done");
}
