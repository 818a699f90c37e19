// waiting.cpp: the hooks' shared machinery (common.hpp): when to act, what
// a descriptor is, and parking until descriptors may be ready.

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "hooks/common.hpp"
#include "hooks/libc.hpp"

namespace weft::hooks {
namespace {

// Set in a forked child (pthread_atfork), where no runtime thread exists.
std::atomic<bool> g_forked{false};

// Resolve libc's functions before main, while one thread runs, and learn
// about forks.
[[gnu::constructor]] void init() {
  libc();
  ::pthread_atfork(nullptr, nullptr, [] { g_forked.store(true, std::memory_order_relaxed); });
}

// Per-descriptor caches: 4096 descriptors per chunk, chunks installed by
// CAS and never freed; numbers past the table are not cached.
constexpr unsigned chunk_bits = 12;
constexpr std::size_t max_chunks = 256;

template <class T>
class fd_table {
 public:
  std::atomic<T>* slot(int fd, bool create) noexcept {
    const auto u = static_cast<unsigned>(fd);
    const std::size_t c = u >> chunk_bits;
    if (fd < 0 || c >= max_chunks) return nullptr;
    auto* chunk = chunks_[c].load(std::memory_order_acquire);  // pairs with the CAS below
    if (chunk == nullptr) {
      if (!create) return nullptr;
      auto* fresh = new (std::nothrow) std::atomic<T>[std::size_t{1} << chunk_bits]();
      if (fresh == nullptr) return nullptr;
      if (chunks_[c].compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
        chunk = fresh;
      } else {
        delete[] fresh;
      }
    }
    return &chunk[u & ((1u << chunk_bits) - 1)];
  }

 private:
  std::atomic<std::atomic<T>*> chunks_[max_chunks]{};
};

// The kind cache. Relaxed: a stale kind costs one reclassification
// (ENOTSOCK) or a call that blocks its thread, never a wrong result.
fd_table<std::uint8_t> g_kinds;
std::atomic<std::uint8_t>* kind_slot(int fd, bool create) noexcept {
  return g_kinds.slot(fd, create);
}

// The mode cache: what a would-block call needs to know besides the kernel's
// EAGAIN, remembered only when the answer is "wait, with no limit", so the
// common case (a blocking socket without timeouts) costs no fcntl(F_GETFL)
// and no getsockopt per wait: +10% hooked hiredis throughput here.
//   * A word per descriptor: generation (44 bits) | reset count (17) |
//     mode bits (3). The bits count only while the generation is
//     g_mode_gen's.
//   * g_mode_gen: bumped by every hooked call that can falsify a cached
//     answer, on any descriptor (fcntl(F_SETFL) or ioctl(FIONBIO) setting
//     O_NONBLOCK, setsockopt of a non-zero SO_RCVTIMEO/SO_SNDTIMEO; io.cpp):
//     the file's flags and the socket's options
//     are shared by every dup of it, so one descriptor's change must
//     invalidate all. The bump follows the kernel call.
//   * A learner reads its word and the generation before it asks the
//     kernel, and installs its answer by CAS from that word, tagged with
//     that generation: a change that raced with the question bumped the
//     generation after the kernel took it, so the new word is stale at
//     once; a reset that raced with it (the descriptor closed and its
//     number reused) moved the reset count, so the CAS fails. A call that
//     raced with a change may use the old answer, as a call the kernel had
//     already started would.
//   * set_kind (a descriptor created, closed, replaced, or found to be
//     another file) resets the word: bits cleared, reset count + 1.
//   * Relaxed throughout: the word carries its own validity, and a caller
//     ordered after a change by any synchronisation reads the bumped
//     generation (coherence).
//   * Not seen: a change made by another process sharing the file, or by a
//     raw system call (README).
constexpr std::uint64_t mode_blocking = 1;  // O_NONBLOCK clear
constexpr std::uint64_t mode_no_rcvtimeo = 2;
constexpr std::uint64_t mode_no_sndtimeo = 4;
constexpr unsigned mode_bits = 3;
constexpr unsigned reset_bits = 17;
constexpr unsigned gen_shift = mode_bits + reset_bits;
constexpr std::uint64_t mode_mask = (std::uint64_t{1} << mode_bits) - 1;
constexpr std::uint64_t reset_mask = ((std::uint64_t{1} << reset_bits) - 1) << mode_bits;
std::atomic<std::uint64_t> g_mode_gen{1};
fd_table<std::uint64_t> g_modes;

// mode_question: a learner's snapshot, taken before it asks the kernel.
struct mode_question {
  std::atomic<std::uint64_t>* slot;
  std::uint64_t word;
  std::uint64_t gen;
};

// mode_known: whether `bit` is known for `fd`; if not, `q` is the snapshot
// to learn it with.
bool mode_known(int fd, std::uint64_t bit, mode_question& q) noexcept {
  q.gen = g_mode_gen.load(std::memory_order_relaxed);
  q.slot = g_modes.slot(fd, true);
  q.word = q.slot != nullptr ? q.slot->load(std::memory_order_relaxed) : 0;
  return (q.word >> gen_shift) == q.gen && (q.word & bit) != 0;
}

// learn_mode: `bit` holds, as the kernel said after the snapshot `q`.
void learn_mode(const mode_question& q, std::uint64_t bit) noexcept {
  if (q.slot == nullptr) return;
  const std::uint64_t old_bits = (q.word >> gen_shift) == q.gen ? q.word & mode_mask : 0;
  std::uint64_t expected = q.word;
  q.slot->compare_exchange_strong(expected,
                                  (q.gen << gen_shift) | (q.word & reset_mask) | old_bits | bit,
                                  std::memory_order_relaxed);
}

void reset_mode(int fd) noexcept {
  std::atomic<std::uint64_t>* slot = g_modes.slot(fd, false);
  if (slot == nullptr) return;
  std::uint64_t w = slot->load(std::memory_order_relaxed);
  while (!slot->compare_exchange_weak(
      w, ((w & reset_mask) + (std::uint64_t{1} << mode_bits)) & reset_mask,
      std::memory_order_relaxed)) {
  }
}

// classify: unknown when fstat fails (the call itself then reports EBADF).
fd_kind classify(int fd) noexcept {
  struct stat st;
  const int saved = errno;
  const int rc = ::fstat(fd, &st);
  errno = saved;
  if (rc != 0) return fd_kind::unknown;
  if (S_ISSOCK(st.st_mode)) return fd_kind::socket;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) return fd_kind::plain;
  return fd_kind::pollable;  // pipes, ttys, other devices, eventfd and other anonymous files
}

}  // namespace

bool in_fiber() noexcept {
  return !g_forked.load(std::memory_order_relaxed) && detail::hook_parkable();
}

[[gnu::noinline]] int get_errno() noexcept { return errno; }
[[gnu::noinline]] void set_errno(int e) noexcept { errno = e; }

fd_kind kind_of(int fd) noexcept {
  std::atomic<std::uint8_t>* slot = kind_slot(fd, true);
  if (slot != nullptr) {
    const auto k = static_cast<fd_kind>(slot->load(std::memory_order_relaxed));
    if (k != fd_kind::unknown) return k;
  }
  const fd_kind k = classify(fd);
  if (k == fd_kind::unknown) return fd_kind::plain;
  if (slot != nullptr) slot->store(static_cast<std::uint8_t>(k), std::memory_order_relaxed);
  return k;
}

void set_kind(int fd, fd_kind k) noexcept {
  if (std::atomic<std::uint8_t>* slot = kind_slot(fd, k != fd_kind::unknown)) {
    slot->store(static_cast<std::uint8_t>(k), std::memory_order_relaxed);
  }
  reset_mode(fd);
}

void modes_changed() noexcept { g_mode_gen.fetch_add(1, std::memory_order_relaxed); }

void fresh(int fd, fd_kind k) noexcept {
  if (g_forked.load(std::memory_order_relaxed)) return;
  detail::hook_forget(fd);
  set_kind(fd, k);
}

bool user_nonblocking(int fd) noexcept {
  mode_question q;
  if (mode_known(fd, mode_blocking, q)) return false;
  const int fl = libc().fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK) == 0) learn_mode(q, mode_blocking);
  return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

std::int64_t sock_deadline(int fd, int dir) noexcept {
  const std::uint64_t bit = dir == 0 ? mode_no_rcvtimeo : mode_no_sndtimeo;
  mode_question q;
  if (mode_known(fd, bit, q)) return hook_no_deadline;
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, dir == 0 ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, &len) != 0) {
    return hook_no_deadline;
  }
  if (tv.tv_sec == 0 && tv.tv_usec == 0) {
    learn_mode(q, bit);
    return hook_no_deadline;
  }
  return detail::hook_now() + static_cast<std::int64_t>(tv.tv_sec) * 1000000000 +
         static_cast<std::int64_t>(tv.tv_usec) * 1000;
}

// ---- fd_waiter ----

namespace {

constexpr short read_events = POLLIN | POLLRDNORM | POLLRDHUP;
constexpr short write_events = POLLOUT | POLLWRNORM;

// direction_of: 0 (read) or 1 (write) when `events` asks for one direction
// the netpoller's record tracks, else -1 (both, or urgent data).
int direction_of(short events) noexcept {
  if (events != 0 && (events & ~read_events) == 0) return 0;
  if (events != 0 && (events & ~write_events) == 0) return 1;
  return -1;
}

}  // namespace

fd_waiter::fd_waiter(int fd, short events, std::int64_t deadline) noexcept
    : one_{fd, events, 0}, fds_(&one_), n_(1), deadline_(deadline) {}

fd_waiter::fd_waiter(pollfd* fds, nfds_t n, std::int64_t deadline) noexcept
    : fds_(fds), n_(n), deadline_(deadline) {}

fd_waiter::~fd_waiter() {
  // Runs after the hook set its errno: keep it (deregistering a descriptor
  // dup2 replaced, say, fails with ENOENT).
  const int saved = get_errno();
  if (turn_.pd != nullptr) detail::hook_end_turn(turn_);
  if (epfd_ >= 0) {
    detail::hook_forget(epfd_);
    libc().close(epfd_);
  }
  set_errno(saved);
}

int fd_waiter::start() {
  started_ = true;
  const int dir = n_ == 1 ? direction_of(fds_[0].events) : -1;
  if (dir < 0) return start_private();
  // Without a deadline, queue behind another operation in this direction;
  // with one, do not wait for it (its wait might outlast our deadline).
  const int e = detail::hook_take_turn(fds_[0].fd, dir, deadline_ == hook_no_deadline, turn_);
  if (e == EBUSY) return start_private();
  return e;  // 0: try once more under the turn first (fd_hooks.hpp)
}

int fd_waiter::start_private() {
  // Level-triggered: readiness that exists now or later always shows, so
  // the first wait needs no retry.
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return get_errno();
  fresh(ep, fd_kind::pollable);
  epfd_ = ep;
  for (nfds_t i = 0; i < n_; ++i) {
    if (fds_[i].fd < 0) continue;
    epoll_event ev{};
    ev.events = static_cast<std::uint32_t>(fds_[i].events) &
                (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |
                 EPOLLWRBAND | EPOLLRDHUP);
    ev.data.u64 = i;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fds_[i].fd, &ev) != 0 && errno == EEXIST) {
      // The same descriptor twice in the set: wait for anything on it.
      ev.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;
      ::epoll_ctl(ep, EPOLL_CTL_MOD, fds_[i].fd, &ev);
    }
    // Others (EPERM: a regular file, always ready; EBADF) show in poll().
  }
  return detail::hook_take_turn(ep, 0, true, turn_);
}

int fd_waiter::wait() {
  if (!started_) {
    const int e = start();
    if (e != 0 || turn_.pd == nullptr || epfd_ < 0) return e;
  }
  return detail::hook_wait(turn_, deadline_);
}

int wait_ready(pollfd* fds, nfds_t n, std::int64_t deadline) {
  fd_waiter w(fds, n, deadline);
  for (;;) {
    const int r = libc().poll(fds, n, 0);
    if (r != 0) return r;
    const int e = w.wait();
    if (e == ETIMEDOUT) return 0;
    if (e == EBADF && n == 1) {
      fds[0].revents = POLLNVAL;  // closed (or replaced) while we waited
      return 1;
    }
    if (e != 0) {
      // Cannot wait on the netpoller: block the thread like libc.
      const std::int64_t now = detail::hook_now();
      const int ms =
          deadline == hook_no_deadline
              ? -1
              : static_cast<int>(deadline <= now ? 0 : (deadline - now + 999999) / 1000000);
      return libc().poll(fds, n, ms);
    }
  }
}

}  // namespace weft::hooks
