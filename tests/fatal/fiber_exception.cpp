// Must die like an unrecovered Go panic: an exception escaping a fiber.
#include <cstdio>
#include <stdexcept>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 2;
  weft::run(
      [] {
        weft::go([] { throw std::runtime_error("disk on fire"); });
        weft::sleep_for(std::chrono::seconds(30));
      },
      o);
  std::puts("not reached");
}
