// Three hogs started at one site: the first is reported as it happens, the
// other two are summed up in one line when the run ends.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <weft/detail/introspect.hpp>
#include <weft/weft.hpp>

namespace {

// hog: spins with no scheduling point until the fiber queued behind it has
// run (sysmon must move that fiber and lend it a processor) and sysmon has
// counted it as the `n`th hog (once its thread ran for hog_handoff), then
// returns.
void start_hog(std::atomic<bool>& released, std::uint64_t n, weft::wait_group& wg) {
  weft::go([&released, n, &wg] {
    while (!released.load() || weft::detail::hogs_reported() < n) {
    }
    wg.done();
  });
}

}  // namespace

int main() {
  weft::options o;
  o.workers = 1;
  weft::run(
      [] {
        for (int i = 0; i < 3; ++i) {
          std::atomic<bool> released{false};
          weft::wait_group wg;
          wg.add(1);
          start_hog(released, static_cast<std::uint64_t>(i) + 1, wg);
          weft::yield();  // queued behind the hog until sysmon moves us
          released = true;
          wg.wait();
        }
      },
      o);
  std::fputs("hog aggregate test finished\n", stderr);
}
