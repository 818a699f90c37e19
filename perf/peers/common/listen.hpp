#pragma once
// listen.hpp: address parsing and listening sockets for the C10K peer servers
// (perf/peers/epoll, perf/peers/threads). Header-only, no weft.

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace peers {

// listen_on: a listening TCP socket on "host:port", "[v6]:port" or ":port"
// (port 0 picks one). `reuse_port` lets several sockets share the address so
// the kernel spreads connections over them. `flags` go to socket(2).
inline int listen_on(const std::string& address, bool reuse_port, int flags = 0) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    throw std::invalid_argument("address is not HOST:PORT: " + address);
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) throw std::runtime_error("cannot resolve " + address + ": " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | flags, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 4096) != 0) {
    int e = errno;
    freeaddrinfo(res);
    throw std::system_error(e, std::generic_category(), "bind/listen " + address);
  }
  freeaddrinfo(res);
  return fd;
}

// bound_address: "host:port" the socket is bound to (for a port-0 listener).
inline std::string bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  char host[NI_MAXHOST], port[NI_MAXSERV];
  getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, port, sizeof port,
              NI_NUMERICHOST | NI_NUMERICSERV);
  std::string out;
  if (ss.ss_family == AF_INET6) out += '[';
  out += host;
  if (ss.ss_family == AF_INET6) out += ']';
  out += ':';
  out += port;
  return out;
}

// write_all: blocking send of all bytes; false on error (peer gone).
inline bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace peers
