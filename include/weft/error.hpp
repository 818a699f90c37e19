#pragma once
// weft/error.hpp: weft's own error codes, for the std::error_code overloads
// of weft::net, weft::net::reader and the context-aware calls.
//
// Errors that come from the operating system keep their errno in
// std::generic_category() (ECONNRESET, EPIPE, ETIMEDOUT, ...); these are the
// conditions that have no errno of their own. Two of them compare equal to
// the std::errc condition a caller is likely to test already:
//
//   if (ec == std::errc::operation_canceled)  // a closed conn, or weft::errc::canceled
//   if (ec == std::errc::timed_out)           // a conn deadline, or deadline_exceeded
//   if (ec == weft::errc::canceled)           // only a cancelled context

#include <system_error>
#include <type_traits>

#include "weft/detail/cxx20.hpp"

namespace weft {

enum class errc {
  // The context was cancelled (context::cancel, or a parent's). Equivalent
  // to std::errc::operation_canceled. Message: "context canceled".
  canceled = 1,
  // The context's deadline passed. Equivalent to std::errc::timed_out.
  // Message: "context deadline exceeded".
  deadline_exceeded,
  // The stream ended before the operation could complete: read_exactly,
  // reader::peek, reader::read_until at the end of the stream.
  eof,
  // A reader's token (a line, a peek) does not fit in its size limit.
  // Equivalent to std::errc::message_size.
  buffer_full,
};

// error_category: the category of weft::errc, named "weft".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace weft

template <>
struct std::is_error_code_enum<weft::errc> : std::true_type {};
