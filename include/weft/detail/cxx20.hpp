#pragma once
// detail/cxx20.hpp: weft's headers need C++20. Included first by the public
// headers, so that an older -std gets this message before anything else.

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "weft needs C++20: compile with -std=c++20 or later"
#endif
