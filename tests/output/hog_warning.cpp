// Must print the one-time hog warning and then finish normally.
#include <atomic>
#include <cstdio>
#include <weft/detail/introspect.hpp>
#include <weft/weft.hpp>

int main() {
  weft::options o;
  o.workers = 1;
  std::atomic<bool> main_ran{false};
  weft::run(
      [&] {
        weft::go([&] {
          // No scheduling point until the fiber queued behind it has run
          // (sysmon must move it and lend it a processor, on any machine)
          // and the hog was reported, once its thread ran for hog_handoff.
          while (!main_ran.load() || weft::detail::hogs_reported() == 0) {
          }
        });
        weft::yield();  // queued behind the hog: sysmon moves us
        main_ran = true;
      },
      o);
  std::fputs("hog test finished\n", stderr);
}
