// address.cpp: address parsing, printing and resolution (address.hpp).

#include "netpoll/address.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>

#include <cerrno>
#include <cstring>

#include "weft/blocking.hpp"

namespace weft::detail {
namespace {

[[noreturn]] void bad_address(std::string_view address, const char* why, const char* api) {
  throw std::system_error(
      std::make_error_code(std::errc::invalid_argument),
      std::string(api) + ": " + why + " in address \"" + std::string(address) + "\"");
}

class gai_category_t : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

}  // namespace

const std::error_category& gai_category() noexcept {
  static const gai_category_t cat;
  return cat;
}

host_port split_host_port(std::string_view address, const char* api) {
  host_port hp;
  std::string_view rest;
  if (!address.empty() && address.front() == '[') {
    const std::size_t close = address.find(']');
    if (close == std::string_view::npos) bad_address(address, "missing ']'", api);
    hp.host = std::string(address.substr(1, close - 1));
    rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') bad_address(address, "missing port", api);
    rest.remove_prefix(1);
  } else {
    const std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) bad_address(address, "missing port", api);
    hp.host = std::string(address.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      bad_address(address, "too many colons (bracket IPv6 literals)", api);
    }
    rest = address.substr(colon + 1);
  }
  if (rest.empty() || rest.size() > 5) bad_address(address, "invalid port", api);
  unsigned port = 0;
  for (char c : rest) {
    if (c < '0' || c > '9') bad_address(address, "invalid port", api);
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) bad_address(address, "invalid port", api);
  hp.port = static_cast<std::uint16_t>(port);
  return hp;
}

bool ip_literal(const std::string& host, std::uint16_t port, sock_address& out) noexcept {
  out = sock_address{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.ss);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.len = sizeof(sockaddr_in);
    return true;
  }
  out = sock_address{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
  std::string ip = host;
  const std::size_t pct = ip.find('%');
  if (pct != std::string::npos) {
    const std::string zone = ip.substr(pct + 1);
    ip.resize(pct);
    v6->sin6_scope_id = ::if_nametoindex(zone.c_str());
    if (v6->sin6_scope_id == 0) {
      char* end = nullptr;
      const unsigned long idx = std::strtoul(zone.c_str(), &end, 10);
      if (zone.empty() || *end != '\0') return false;
      v6->sin6_scope_id = static_cast<std::uint32_t>(idx);
    }
  }
  if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::vector<sock_address> resolve(const std::string& host, std::uint16_t port, bool passive,
                                  const char* api) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  const std::string service = std::to_string(port);
  addrinfo* res = nullptr;
  int sys_errno = 0;
  const int rc = weft::blocking([&] {
    const int r = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    sys_errno = errno;  // read before anything can switch fibers
    return r;
  });
  if (rc == EAI_SYSTEM) {
    throw std::system_error(sys_errno, std::generic_category(),
                            std::string(api) + ": resolving \"" + host + "\"");
  }
  if (rc != 0) {
    throw std::system_error(rc, gai_category(), std::string(api) + ": resolving \"" + host + "\"");
  }
  std::vector<sock_address> out;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sock_address a;
    std::memcpy(&a.ss, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    out.push_back(a);
  }
  ::freeaddrinfo(res);
  if (out.empty()) {
    throw std::system_error(EAI_NONAME, gai_category(),
                            std::string(api) + ": resolving \"" + host + "\"");
  }
  return out;
}

std::string format_address(const sockaddr* sa, socklen_t len) {
  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      ::inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(ntohs(v6->sin6_port));
    }
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    std::string host(buf);
    if (v6->sin6_scope_id != 0) {
      char ifname[IF_NAMESIZE] = {};
      host += '%';
      host += ::if_indextoname(v6->sin6_scope_id, ifname) != nullptr
                  ? std::string(ifname)
                  : std::to_string(v6->sin6_scope_id);
    }
    return "[" + host + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  return "?";
}

std::uint16_t port_of(const sockaddr* sa) noexcept {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  }
  return 0;
}

}  // namespace weft::detail
