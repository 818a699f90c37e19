#pragma once
// address.hpp: parsing "host:port" and printing socket addresses the way
// Go does ("127.0.0.1:8080", "[::1]:8080"), and name resolution.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace weft::detail {

struct host_port {
  std::string host;  // without brackets; empty for ":8080"
  std::uint16_t port = 0;
};

struct sock_address {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family() const noexcept { return ss.ss_family; }
  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss); }
};

// split_host_port: "h:p", "[v6]:p", ":p". Throws std::system_error
// (errc::invalid_argument) naming `api` for anything else.
host_port split_host_port(std::string_view address, const char* api);

// ip_literal: `host` as an IPv4 or IPv6 literal with `port`; false if it
// is not one (then it is a name).
bool ip_literal(const std::string& host, std::uint16_t port, sock_address& out) noexcept;

// resolve: every address of `host` (a name) for TCP, in getaddrinfo's
// order, resolved inside weft::blocking. `passive` for listen. Throws
// std::system_error in gai_category() when resolution fails.
std::vector<sock_address> resolve(const std::string& host, std::uint16_t port, bool passive,
                                  const char* api);

// format_address: Go's spelling; an IPv4-mapped IPv6 address prints as IPv4.
std::string format_address(const sockaddr* sa, socklen_t len);
std::uint16_t port_of(const sockaddr* sa) noexcept;

// gai_category: getaddrinfo's EAI_* codes (named "getaddrinfo").
const std::error_category& gai_category() noexcept;

}  // namespace weft::detail
