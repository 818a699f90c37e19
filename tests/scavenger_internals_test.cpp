// scavenger_internals_test.cpp: the scavenger of the fiber record and stack
// pools on its own, with no runtime running (a pool object, its scavenge()
// called tick by tick): what a released page may and may not change.

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "runtime/fiber_pool.hpp"
#include "runtime/stack_pool.hpp"

using weft::detail::fiber;
using weft::detail::fiber_pool;
using weft::detail::stack_cache;
using weft::detail::stack_pool;
using weft::detail::stack_slot;

TEST_SUITE_BEGIN("internals");

namespace {

// hand_out: one incarnation of a record, as go() makes it (fiber.hpp F5).
fiber* hand_out(fiber_pool& pool) {
  fiber* f = pool.acquire_shared();
  if (f->seq.load() % 2 != 1) FAIL("a record handed out has an even seq");
  f->publish_identity();
  return f;
}

constexpr std::size_t canary_bytes = 64;  // stack_pool's canary_words * 8

unsigned char* canary_of(const stack_slot* s) {
  return reinterpret_cast<unsigned char*>(s->lo) - canary_bytes;
}

}  // namespace

TEST_CASE(
    "a fiber record reused after the scavenger gave its page back has a larger seq than it "
    "ever had") {
  fiber_pool pool;
  // Two chunks' worth above the floor the scavenger keeps warm.
  const std::size_t n = std::size_t{fiber_pool::chunk_records} * 3;
  std::vector<fiber*> got(n);
  // Two incarnations each, so every record's seq is 4 when it goes free.
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < n; ++i) got[i] = hand_out(pool);
    for (fiber* f : got) pool.release_shared(f);
  }
  std::unordered_map<const fiber*, std::uint32_t> before;
  for (const fiber* f : got) before[f] = f->seq.load();
  for (int tick = 0; tick < 100 && pool.cold_free() == 0; ++tick) pool.scavenge();
  const std::uint64_t cold = pool.cold_free();
  REQUIRE(cold > 0);
  // Take them all back: the warm records first, then the released ones.
  std::size_t reused = 0, smaller = 0;
  for (std::size_t i = 0; i < n; ++i) {
    fiber* f = hand_out(pool);
    const auto it = before.find(f);
    if (it == before.end()) continue;
    ++reused;
    if (f->seq.load() <= it->second) ++smaller;
  }
  CHECK(pool.cold_free() < cold);  // released records were among them
  CHECK(reused == n);
  CHECK(smaller == 0);
  pool.destroy();
}

TEST_CASE(
    "the scavenger leaves the canary of an unguarded stack it keeps as it was, and a released "
    "stack comes back with its canary armed") {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  stack_pool pool;
  pool.init(4 * page, 0);  // no guard budget: every stack has a canary
  stack_cache c;
  constexpr std::size_t n = 1000;
  std::vector<stack_slot*> all(n);
  for (stack_slot*& s : all) {
    s = pool.acquire(c);
    std::memset(s->lo, 0xa5, s->size);  // used, so resident
  }
  std::sort(all.begin(), all.end(),
            [](const stack_slot* a, const stack_slot* b) { return a->lo < b->lo; });
  // Every fourth stack stays bound, its canary marked as an overflow in
  // progress would leave it (the switch that reports it is yet to come).
  std::vector<stack_slot*> kept, freed;
  for (std::size_t i = 0; i < n; ++i) (i % 4 == 3 ? kept : freed).push_back(all[i]);
  for (stack_slot* s : kept) {
    REQUIRE_FALSE(s->guarded);
    std::memset(canary_of(s), 0x5a, canary_bytes);
  }
  for (stack_slot* s : freed) pool.release(c, s);
  pool.flush(c);
  for (int tick = 0; tick < 200 && pool.warm_free() > stack_pool::scavenge_floor; ++tick) {
    pool.scavenge();
  }
  REQUIRE(pool.cold_free() >= freed.size() - stack_pool::scavenge_floor);
  std::size_t canaries_changed = 0, stacks_changed = 0, reported = 0;
  for (stack_slot* s : kept) {
    const unsigned char* k = canary_of(s);
    if (std::count(k, k + canary_bytes, 0x5a) != static_cast<long>(canary_bytes)) {
      ++canaries_changed;
    }
    if (std::count(s->lo, s->hi(), static_cast<char>(0xa5)) != static_cast<long>(s->size)) {
      ++stacks_changed;
    }
    if (!stack_pool::canary_intact(*s, s->hi())) ++reported;  // the switch would report it
  }
  CHECK(canaries_changed == 0);
  CHECK(stacks_changed == 0);
  CHECK(reported == kept.size());
  // The overflow was staged: clear it, then take every free stack back.
  for (stack_slot* s : kept) std::memset(canary_of(s), 0, canary_bytes);
  std::size_t unarmed = 0;
  for (std::size_t i = 0; i < freed.size(); ++i) {
    const stack_slot* s = pool.acquire(c);
    if (!stack_pool::canary_intact(*s, s->hi())) ++unarmed;
  }
  CHECK(unarmed == 0);
  pool.destroy();
}

TEST_SUITE_END();
