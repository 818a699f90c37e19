// go_test.cpp: every way a user writes weft::go is a call that starts a
// fiber (this file must compile: `weft::go(task);` once declared a
// variable), with decay-copy semantics, recording the caller's line.

#include <functional>
#include <memory>
#include <source_location>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "support.hpp"

namespace {

weft::wait_group* g_wg = nullptr;

void worker() { g_wg->done(); }
void add(std::atomic<int>* sum, int v) {
  sum->fetch_add(v);
  g_wg->done();
}
void eight(std::atomic<int>* sum, int a, int b, int c, int d, int e, int f, int g) {
  sum->fetch_add(a + b + c + d + e + f + g);
  g_wg->done();
}
void take_box(std::unique_ptr<int> p, std::atomic<int>* sum) {
  sum->fetch_add(*p);
  g_wg->done();
}
void take_ref(int& out, int v) {
  out = v;
  g_wg->done();
}
void take_site(std::source_location loc) {
  CHECK(loc.line() != 0);  // an argument like any other, not go()'s site
  g_wg->done();
}

struct functor {
  void operator()() const { g_wg->done(); }
};

struct move_only_job {
  std::unique_ptr<int> v = std::make_unique<int>(5);
  std::atomic<int>* sum;
  void operator()() {
    sum->fetch_add(*v);
    g_wg->done();
  }
};

struct counter {
  std::atomic<int> n{0};
  void bump(int by) {
    n.fetch_add(by);
    g_wg->done();
  }
};

// dumped_line: the start line the dump shows for the fiber of this file
// parked on a channel receive (at most one at a time here), or 0.
unsigned dumped_line(const std::string& file) {
  std::ostringstream os;
  weft::dump_fibers(os);
  std::istringstream in(os.str());
  std::string text;
  while (std::getline(in, text)) {
    if (text.find("[chan recv") == std::string::npos) continue;
    const std::size_t at = text.find(file + ":");
    if (at == std::string::npos) continue;
    return static_cast<unsigned>(std::stoul(text.substr(at + file.size() + 1)));
  }
  return 0;
}

// site_of_parked: dumped_line, once the fiber just started has parked.
unsigned site_of_parked() {
  unsigned line;
  while ((line = dumped_line("go_test.cpp")) == 0) weft::yield();
  return line;
}

}  // namespace

TEST_SUITE_BEGIN("go");

TEST_CASE("every spelling of weft::go is a call that starts a fiber") {
  test::for_each_workers([](unsigned) {
    weft::wait_group wg;
    g_wg = &wg;
    std::atomic<int> sum{0};
    int out = 0;
    counter cnt;
    wg.add(14);
    auto task = [&wg] { wg.done(); };
    weft::go(task);  // a named callable: once a declaration of `task`
    weft::go(worker);
    weft::go(&worker);
    weft::go([&wg] { wg.done(); });
    weft::go(functor{});
    const functor named_functor;
    weft::go(named_functor);
    weft::go(add, &sum, 1);
    weft::go(eight, &sum, 1, 1, 1, 1, 1, 1, 1);  // eight arguments after f
    move_only_job job;
    job.sum = &sum;
    weft::go(std::move(job));
    auto box = std::make_unique<int>(10);
    weft::go(take_box, std::move(box), &sum);
    weft::go(take_ref, std::ref(out), 3);
    weft::go(&counter::bump, &cnt, 2);
    weft::go(take_site, std::source_location::current());
    std::thread plain([&] { weft::go(task); });  // from a plain thread
    weft::blocking([&] { plain.join(); });
    wg.wait();
    CHECK(sum.load() == 1 + 7 + 5 + 10);
    CHECK(out == 3);
    CHECK(cnt.n.load() == 2);
  });
}

TEST_CASE("go copies its arguments, as std::thread does") {
  test::for_each_workers([](unsigned) {
    weft::wait_group wg;
    g_wg = &wg;
    std::atomic<int> seen{0};
    int value = 1;
    auto read = [&seen](int v) {
      seen.store(v);
      g_wg->done();
    };
    weft::chan<int> gate;
    wg.add(1);
    weft::go(
        [gate](auto f, int v) {
          (void)gate.recv();
          f(v);
        },
        read, value);
    value = 2;  // after the copy: the fiber still sees 1
    gate.send(0);
    wg.wait();
    CHECK(seen.load() == 1);
  });
}

TEST_CASE("a fiber's start site in dumps is the line of the go() call") {
  test::for_each_workers([](unsigned) {
    weft::chan<int> block;
    auto parked = [block] { (void)block.recv(); };
    const unsigned named_line = __LINE__ + 1;
    weft::go(parked);
    CHECK(site_of_parked() == named_line);
    block.send(0);

    const auto recv_from = [](weft::chan<int> c) { (void)c.recv(); };
    const unsigned args_line = __LINE__ + 1;
    weft::go(recv_from, block);
    CHECK(site_of_parked() == args_line);
    block.send(0);

    unsigned plain_line = 0;
    std::thread plain([&] {
      plain_line = __LINE__ + 1;
      weft::go(parked);
    });
    weft::blocking([&] { plain.join(); });
    CHECK(site_of_parked() == plain_line);
    block.send(0);
  });
}

TEST_SUITE_END();
