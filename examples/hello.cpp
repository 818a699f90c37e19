// hello: the example at the top of README.md, built and run by the test
// suite so that the README's code stays true.
#include <cstdio>
#include <weft/weft.hpp>

int main() {
  return weft::run([] {
    weft::chan<int> results;
    for (int i = 1; i <= 3; ++i) weft::go([=] { results.send(i * i); });  // three fibers
    int sum = 0;
    for (int k = 0; k < 3; ++k) sum += *results.recv();
    std::printf("sum of squares: %d\n", sum);  // 14
    return 0;
  });
}
