#pragma once
// context_tree.hpp: what blocking calls use to be woken by a weft::context
// (weft/context.hpp; context_tree.cpp holds the design note).

#include <cstdint>
#include <system_error>

#include "weft/context.hpp"

namespace weft::detail {

// ctx_hook: a callback a blocking call registers with a context for the
// duration of one wait. fire() runs at most once, when the context becomes
// done, under the context's lock (and possibly under the timers lock, when
// a deadline fired): it must be short, must not block and must not touch
// any context. It typically sets a flag and wakes one fiber.
struct ctx_hook {
  void (*fire)(ctx_hook* self) noexcept = nullptr;
  void* arg = nullptr;       // for fire
  ctx_hook* prev = nullptr;  // the context's list; guarded by its lock
  ctx_hook* next = nullptr;
  bool linked = false;
};

// ctx_watch: register `h` with `ctx`. Returns ctx's error instead (and
// registers nothing) when it is done already. Registers nothing for
// background().
std::error_code ctx_watch(const context& ctx, ctx_hook& h);
// ctx_unwatch: undo ctx_watch. Once it returns, h.fire is not running and
// never will. Harmless if `h` is not registered.
void ctx_unwatch(const context& ctx, ctx_hook& h) noexcept;
// ctx_deadline_ns: the context's deadline in steady_clock ns, INT64_MAX if none.
std::int64_t ctx_deadline_ns(const context& ctx) noexcept;
// ctx_is_background: never done (cheap test before any watching).
bool ctx_is_background(const context& ctx) noexcept;

}  // namespace weft::detail
