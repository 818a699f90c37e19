#pragma once
// detail::source_location: std::source_location where the library has it,
// else a stand-in built from __builtin_FILE()/__builtin_LINE() (clang 14).

#include "weft/detail/cxx20.hpp"

#if __has_include(<source_location>)
#include <source_location>
#endif

namespace weft::detail {

#if defined(__cpp_lib_source_location)
using source_location = std::source_location;
#else
class source_location {
 public:
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           unsigned line = __builtin_LINE()) noexcept {
    source_location loc;
    loc.file_ = file;
    loc.line_ = line;
    return loc;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr unsigned line() const noexcept { return line_; }

 private:
  const char* file_ = "unknown";
  unsigned line_ = 0;
};
#endif

}  // namespace weft::detail
