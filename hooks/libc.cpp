// libc.cpp: resolving libc's functions behind the hooks (libc.hpp).

#include "hooks/libc.hpp"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

// The sanitizers' interceptors, where the build has them (weak: null
// otherwise).
extern "C" {
#define WEFT_INTERCEPTOR(name) decltype(::name) __interceptor_##name __attribute__((weak));
WEFT_HOOKED_FUNCTIONS(WEFT_INTERCEPTOR)
#undef WEFT_INTERCEPTOR
}

namespace weft::hooks {
namespace {

template <class Fn>
void resolve(Fn& out, Fn interceptor, const char* name) noexcept {
  out = interceptor != nullptr ? interceptor : reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (out == nullptr) {
    std::fprintf(stderr, "weft::hooks: cannot find libc's %s\n", name);
    std::abort();
  }
}

libc_functions resolve_all() noexcept {
  libc_functions f;
#define WEFT_RESOLVE(name) resolve(f.name, &__interceptor_##name, #name);
  WEFT_HOOKED_FUNCTIONS(WEFT_RESOLVE)
#undef WEFT_RESOLVE
  return f;
}

}  // namespace

const libc_functions& libc() noexcept {
  static const libc_functions table = resolve_all();
  return table;
}

}  // namespace weft::hooks
