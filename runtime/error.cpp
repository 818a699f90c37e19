// error.cpp: the "weft" error category (weft/error.hpp).

#include "weft/error.hpp"

#include <string>

namespace weft {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "weft"; }
  std::string message(int ev) const override {
    switch (static_cast<weft::errc>(ev)) {
      case weft::errc::canceled:
        return "context canceled";
      case weft::errc::deadline_exceeded:
        return "context deadline exceeded";
      case weft::errc::eof:
        return "end of stream";
      case weft::errc::buffer_full:
        return "token exceeds the reader's size limit";
    }
    return "unknown weft error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<weft::errc>(ev)) {
      case weft::errc::canceled:
        return std::errc::operation_canceled;
      case weft::errc::deadline_exceeded:
        return std::errc::timed_out;
      case weft::errc::buffer_full:
        return std::errc::message_size;
      default:
        return {ev, *this};
    }
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category c;
  return c;
}

}  // namespace weft
