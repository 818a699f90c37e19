// With WEFT_SIGQUIT=dump, SIGQUIT prints the fiber dump and the program goes on.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::go([] { weft::sleep_for(std::chrono::seconds(30)); });
        weft::sleep_for(std::chrono::milliseconds(10));
        ::raise(SIGQUIT);
        weft::sleep_for(std::chrono::milliseconds(200));  // probe: the dump is printed meanwhile
      },
      o);
  std::fputs("continued after SIGQUIT\n", stderr);
}
