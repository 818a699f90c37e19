// dump_test.cpp: fiber dumps read records that are being recycled
// (runtime/debug.cpp, fiber.hpp F5).

#include <atomic>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "support.hpp"

namespace {

// Which start line each fiber was started at, recorded by the fiber itself.
struct registry {
  weft::mutex mu;
  std::unordered_map<std::uint64_t, unsigned> line_of;  // guarded by mu
};

void note_site(registry* r, unsigned line, weft::wait_group* wg) {
  {
    std::lock_guard<weft::mutex> g(r->mu);
    r->line_of[weft::this_fiber_id()] = line;
  }
  wg->done();
}

// A dump line of a fiber: its id and the text after "started at".
struct seen {
  std::uint64_t id;
  std::string site;
};

void parse_dump(const std::string& dump, std::vector<seen>& out) {
  std::istringstream in(dump);
  std::string text;
  while (std::getline(in, text)) {
    if (text.rfind("fiber ", 0) != 0) continue;
    const std::size_t at = text.find("]: started at ");
    out.push_back(
        seen{std::stoull(text.substr(6)), at == std::string::npos ? text : text.substr(at + 14)});
  }
}

// check_lines: every dump line of a fiber the registry knows names the
// line that fiber was started at. Returns how many lines were checked.
std::size_t check_lines(const std::vector<seen>& lines, const registry& r) {
  std::size_t checked = 0;
  for (const seen& s : lines) {
    const auto it = r.line_of.find(s.id);
    if (it == r.line_of.end()) continue;  // main, the dumper, the spawners
    const std::string want = "dump_test.cpp:" + std::to_string(it->second);
    const bool ok = s.site.size() >= want.size() &&
                    s.site.compare(s.site.size() - want.size(), want.size(), want) == 0;
    if (!ok) FAIL_CHECK("fiber ", s.id, " started at line ", it->second, " dumped as ", s.site);
    ++checked;
  }
  return checked;
}

}  // namespace

TEST_SUITE_BEGIN("dump");

TEST_CASE("a fiber dump taken while records are recycled shows each fiber's own id and site") {
  const int rounds = static_cast<int>(test::scaled(300, 6));
  for (unsigned w : test::worker_counts) {
    CAPTURE(w);
    registry reg;
    std::vector<seen> lines;
    weft::options o;
    o.workers = w;
    weft::run(
        [&] {
          std::atomic<bool> stop{false};
          weft::wait_group spawners;
          for (int k = 0; k < 2; ++k) {
            spawners.add(1);
            weft::go([&] {
              // Two sites, alternating, so a recycled record changes site.
              for (int r = 0; r < rounds; ++r) {
                weft::wait_group wg;
                wg.add(40);
                for (int i = 0; i < 20; ++i) {
                  weft::go(note_site, &reg, unsigned{__LINE__}, &wg);
                  weft::go(note_site, &reg, unsigned{__LINE__}, &wg);
                }
                wg.wait();
              }
              spawners.done();
            });
          }
          weft::go([&] {
            spawners.wait();
            stop.store(true);
          });
          while (!stop.load()) {
            std::ostringstream os;
            weft::dump_fibers(os);
            parse_dump(os.str(), lines);
            weft::yield();
          }
        },
        o);
    test::check_teardown();
    const std::size_t checked = check_lines(lines, reg);
    MESSAGE("dump lines checked: ", checked);
  }
}

TEST_SUITE_END();
