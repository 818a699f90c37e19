// Two fibers deadlock on two mutexes while a third sleeps on a timer (so
// the program as a whole is not deadlocked): the warning names the two.
#include <chrono>
#include <cstdio>
#include <weft/weft.hpp>

weft::mutex a, b;

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::wait_group both_hold;
        both_hold.add(2);
        weft::go([&] {
          std::lock_guard<weft::mutex> la(a);
          both_hold.done();
          both_hold.wait();
          std::lock_guard<weft::mutex> lb(b);
        });
        weft::go([&] {
          std::lock_guard<weft::mutex> lb(b);
          both_hold.done();
          both_hold.wait();
          std::lock_guard<weft::mutex> la(a);
        });
        weft::go([] { weft::sleep_for(std::chrono::hours(1)); });
        both_hold.wait();
        // The warning needs a 1 s wait and two once-a-second ticks that agree
        // (deadlock.cpp); 5 s leaves room for a loaded machine.
        weft::sleep_for(std::chrono::milliseconds(5000));
      },
      o);
  std::fputs("main returned\n", stderr);
}
