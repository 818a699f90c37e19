#pragma once
// sanitizers.hpp: WEFT_ASAN and WEFT_TSAN, 1 in AddressSanitizer and
// ThreadSanitizer builds. gcc says so with __SANITIZE_ADDRESS__ and
// __SANITIZE_THREAD__, clang 16 only through __has_feature. Every file
// that tests them includes this header itself: a file that got them through
// an unrelated include would silently take the unsanitised path once that
// include went away.

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(WEFT_ASAN)
#define WEFT_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(WEFT_TSAN)
#define WEFT_TSAN 1
#endif
