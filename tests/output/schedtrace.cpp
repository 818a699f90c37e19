// With WEFT_SCHEDTRACE=10, a scheduler line is printed every 10 ms.
#include <chrono>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 2;
  weft::run([] { weft::sleep_for(std::chrono::milliseconds(60)); }, o);
}
