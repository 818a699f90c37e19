#include <cstdio>
#include <weft/weft.hpp>

int main() {
  int r = weft::run([] {
    int value = 0;
    weft::wait_group wg;
    wg.add(1);
    weft::go([&] {
      value = 42;
      wg.done();
    });
    wg.wait();
    return value;
  });
  std::printf("consumer ok %d\n", r);
}
