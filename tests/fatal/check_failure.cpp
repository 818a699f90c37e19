// A broken internal invariant (WEFT_CHECK) in a fiber: the report names the
// check's file and line, the fiber and the worker, then the process aborts.
#include <cstdio>
#include <weft/detail/check.hpp>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::chan<int> done;
        weft::go([done] {
          const int two = 2;
          WEFT_CHECK(two + two == 5, "arithmetic as the runtime expects it");
          done.send(1);
        });
        done.recv();
      },
      o);
  std::puts("not reached");
}
