#pragma once
// weft/chan.hpp: Go channels for fibers and threads.
//
//   weft::chan<int> c;          // unbuffered: a send completes when a receiver takes it
//   weft::chan<int> b(64);      // buffered: up to 64 values wait in the channel
//   weft::go([=] { c.send(42); });
//   std::optional<int> v = c.recv();   // nullopt once c is closed and drained
//   for (int x : b) { ... }            // receive until closed and drained
//
// A chan is a shared handle, like a Go channel value: copies refer to the
// same channel, a moved-from chan is nil, and the channel lives until its
// last handle goes (a fiber parked on one keeps it alive while it is
// unwound at shutdown). Operations are const: they act on the shared
// channel. As with std::shared_ptr, the handle object an operation is
// called on must stay alive (not be reassigned) until the call returns.
//
// Every operation works from a fiber (blocking parks the fiber) and from a
// plain OS thread (blocking sleeps the thread); the two interoperate. A
// channel needs no runtime: it may outlive a weft::run, be used between
// runs by plain threads, and be used again in a later run.
//
// Semantics are Go's: values are received in the order their sends
// completed, blocked senders and receivers are each served in arrival
// order, an unbuffered send completes only once a receiver has the value,
// and a receive from a closed channel drains its buffer before it yields
// nullopt. Errors (closed_channel): send on a closed channel, close of a
// closed channel, close of a nil channel. Send and receive on a nil
// channel block forever.
//
// Element types: any object type that is move-constructible (move-only and
// non-default-constructible types included). Values move under the
// channel's spinlock, so a type whose move constructor may throw is kept in
// a heap box inside the channel (one allocation per send; its move then
// happens outside the lock, in send() and recv()).

#include <cstddef>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "weft/detail/chan_core.hpp"

namespace weft {

// closed_channel: misuse of a closed or nil channel. what() is exactly Go's
// panic text: "send on closed channel", "close of closed channel",
// "close of nil channel".
struct closed_channel : std::logic_error {
  using std::logic_error::logic_error;
};

template <class T>
class chan;

namespace detail {

[[noreturn]] void throw_closed_channel(const char* what);
[[noreturn]] void throw_capacity_too_large();
// chan_alloc / chan_free: memory for channel states (runtime/alloc.cpp): a
// thread-caching allocator, since channels are often made on one thread
// and freed on another (a fiber's, the poller's for after()).
void* chan_alloc(std::size_t size, std::size_t align);
void chan_free(void* p, std::size_t align) noexcept;

// chan_traits: how a T is kept inside a channel (see "Element types").
template <class T>
struct chan_traits {
  static constexpr bool boxed = !std::is_nothrow_move_constructible_v<T>;
  using stored = std::conditional_t<boxed, std::unique_ptr<T>, T>;

  template <class U>
  static stored make(U&& v) {
    if constexpr (boxed) {
      return std::make_unique<T>(std::forward<U>(v));
    } else {
      return stored(std::forward<U>(v));
    }
  }
  static std::optional<T> unbox(std::optional<stored>&& s) {
    if constexpr (boxed) {
      if (!s) return std::nullopt;
      return std::optional<T>(std::move(**s));
    } else {
      return std::move(s);
    }
  }
};

// chan_state<T>: one channel: chan_base plus a ring of `cap` values stored
// right after it.
template <class T>
struct chan_state final : chan_base {
  using stored = typename chan_traits<T>::stored;

  static constexpr std::size_t align_all = alignof(chan_base) > alignof(stored) ? alignof(chan_base)
                                                                                : alignof(stored);
  static constexpr std::size_t round_up(std::size_t n, std::size_t a) {
    return (n + a - 1) / a * a;
  }
  // chan_state adds no members (checked in create), so the ring starts
  // right after chan_base.
  static constexpr std::size_t buf_offset = round_up(sizeof(chan_base), align_all);

  static chan_state* create(std::size_t capacity) {
    static_assert(sizeof(chan_state) == sizeof(chan_base), "the ring would overlap a member");
    constexpr std::size_t limit = (std::size_t{1} << 48) / (sizeof(stored) + 1);
    if (capacity > limit) throw_capacity_too_large();
    void* mem = chan_alloc(buf_offset + capacity * sizeof(stored), align_all);
    auto* s = ::new (mem) chan_state();
    s->cap = capacity;
    s->destroy = &destroy_fn;
    return s;
  }

  stored* buf() noexcept {
    return std::launder(reinterpret_cast<stored*>(reinterpret_cast<char*>(this) + buf_offset));
  }
  std::size_t wrap(std::size_t i) const noexcept { return i >= cap ? i - cap : i; }

  // try_recv / try_send: one attempt under the lock. On done, `wake` is the
  // node whose owner must be woken (unlock_and_wake), or null.
  op_result try_recv(std::optional<stored>& out, chan_node*& wake) noexcept WEFT_REQUIRES(lock) {
    const std::size_t n = count.load(std::memory_order_relaxed);
    if (n != 0) {
      stored* slot = buf() + head;
      out.emplace(std::move(*slot));
      slot->~stored();
      head = wrap(head + 1);
      if (chan_node* s = claim(sendq)) {
        // Full buffer with a blocked sender (C3): its value takes the slot
        // just freed, which is now the tail; count is unchanged.
        ::new (slot) stored(std::move(*static_cast<stored*>(s->slot)));
        wake = s;
      } else {
        count.store(n - 1, std::memory_order_relaxed);
      }
      return op_result::done;
    }
    if (chan_node* s = claim(sendq)) {  // unbuffered (C3 for buffered)
      out.emplace(std::move(*static_cast<stored*>(s->slot)));
      wake = s;
      return op_result::done;
    }
    return closed.load(std::memory_order_relaxed) ? op_result::closed : op_result::blocked;
  }

  op_result try_send(stored& v, chan_node*& wake) noexcept WEFT_REQUIRES(lock) {
    if (closed.load(std::memory_order_relaxed)) return op_result::closed;
    if (chan_node* r = claim(recvq)) {  // C2: the buffer is empty, so no value overtakes
      static_cast<std::optional<stored>*>(r->slot)->emplace(std::move(v));
      wake = r;
      return op_result::done;
    }
    const std::size_t n = count.load(std::memory_order_relaxed);
    if (n < cap) {
      ::new (buf() + wrap(head + n)) stored(std::move(v));
      count.store(n + 1, std::memory_order_relaxed);
      return op_result::done;
    }
    return op_result::blocked;
  }

  void send(stored& v) {
    chan_lock(lock);
    chan_node* wake = nullptr;
    switch (try_send(v, wake)) {
      case op_result::done:
        unlock_and_wake(lock, wake);
        return;
      case op_result::closed:
        lock.unlock();
        throw_closed_channel("send on closed channel");
      case op_result::blocked:
        break;
    }
    // Blocked: try_send drained recvq of claimed nodes (C1) and found no room (C3).
    WEFT_DCHECK(recvq.empty(), "chan_core C1");
    WEFT_DCHECK(count.load(std::memory_order_relaxed) == cap, "chan_core C3");
    waiter w;
    w.prepare();
    chan_node node;
    node.w = &w;
    node.slot = &v;
    sendq.push(&node);
    park_node(w, node, sendq, wait_reason::chan_send);
    if (node.closed) throw_closed_channel("send on closed channel");
  }

  void recv(std::optional<stored>& out) {
    chan_lock(lock);
    chan_node* wake = nullptr;
    switch (try_recv(out, wake)) {
      case op_result::done:
        unlock_and_wake(lock, wake);
        return;
      case op_result::closed:
        lock.unlock();
        return;
      case op_result::blocked:
        break;
    }
    // Blocked: try_recv drained sendq of claimed nodes (C1); the buffer is empty (C2).
    WEFT_DCHECK(sendq.empty(), "chan_core C1");
    WEFT_DCHECK(count.load(std::memory_order_relaxed) == 0, "chan_core C2");
    waiter w;
    w.prepare();
    chan_node node;
    node.w = &w;
    node.slot = &out;
    recvq.push(&node);
    park_node(w, node, recvq, wait_reason::chan_recv);
    // A sender filled `out`, or close() left it empty.
  }

  // destroy_fn: the default destroy (chan_base::destroy): destroys the
  // buffered values and frees the state. Not analysed (thread_safety.hpp):
  // the last reference is gone, so no other party can reach the buffer.
  static void destroy_fn(chan_base* b) noexcept WEFT_NO_THREAD_SAFETY_ANALYSIS {
    auto* s = static_cast<chan_state*>(b);
    if constexpr (!std::is_trivially_destructible_v<stored>) {
      const std::size_t n = s->count.load(std::memory_order_relaxed);
      stored* buf = s->buf();
      for (std::size_t i = 0; i < n; ++i) buf[s->wrap(s->head + i)].~stored();
    }
    s->~chan_state();
    chan_free(static_cast<void*>(s), align_all);
  }

  // offer: a send that never blocks: false (and v untouched) when the
  // channel is closed or has no room and no waiting receiver. For runtime
  // timers; callable under the timers lock.
  bool offer(stored&& v) noexcept {
    chan_lock(lock);
    chan_node* wake = nullptr;
    if (try_send(v, wake) != op_result::done) {
      lock.unlock();
      return false;
    }
    unlock_and_wake(lock, wake);
    return true;
  }

  void close() {
    chan_lock(lock);
    if (closed.load(std::memory_order_relaxed)) {
      lock.unlock();
      throw_closed_channel("close of closed channel");
    }
    // relaxed: readers without the lock use it only as a hint.
    closed.store(true, std::memory_order_relaxed);
    wake_list woken;
    while (chan_node* r = claim(recvq)) {
      r->closed = true;  // its slot stays empty: nullopt
      woken.add_locked(r);
    }
    while (chan_node* s = claim(sendq)) {
      s->closed = true;  // it throws
      woken.add_locked(s);
    }
    lock.unlock();
    woken.wake_unlocked();
  }

 private:
  chan_state() = default;

  // park_node: park on `q` with the lock as release (the node is queued);
  // if the fiber is unwound instead, unlink the node before the exception
  // leaves (C5).
  void park_node(waiter& w, chan_node& node, node_fifo& q, wait_reason why) WEFT_RELEASE(lock) {
    try {
      park(w, lock, why, this);
    } catch (...) {
      chan_lock(lock);
      if (node.queued) q.remove(&node);
      lock.unlock();
      throw;
    }
  }
};

// chan_access: how select and the timers reach a handle's state.
struct chan_access {
  template <class T>
  static chan_state<T>* state(const chan<T>& c) noexcept {
    return c.s_;
  }
  template <class T>
  static chan<T> adopt(chan_state<T>* s) noexcept {
    return chan<T>(typename chan<T>::adopt_tag{}, s);
  }
  // waiting: parties queued to send (or receive) on c now. For tests.
  template <class T>
  static std::size_t waiting(const chan<T>& c, bool senders) noexcept {
    chan_state<T>* s = c.s_;
    if (s == nullptr) return 0;
    chan_lock(s->lock);
    const std::size_t n = (senders ? s->sendq : s->recvq).length_locked();
    s->lock.unlock();
    return n;
  }
};

}  // namespace detail

template <class T>
class chan {
  static_assert(std::is_object_v<T> && !std::is_array_v<T> && !std::is_const_v<T> &&
                    !std::is_volatile_v<T>,
                "weft::chan<T>: T must be a non-const, non-array object type");
  static_assert(std::is_move_constructible_v<T>, "weft::chan<T>: T must be move-constructible");
  using state = detail::chan_state<T>;
  using traits = detail::chan_traits<T>;

 public:
  using value_type = T;

  // chan: an unbuffered channel (make(chan T)).
  chan() : s_(state::create(0)) {}
  // chan(capacity): a channel buffering up to `capacity` values; 0 is
  // unbuffered (make(chan T, capacity)). Throws std::length_error when the
  // buffer could not be addressed, std::bad_alloc when it cannot be had.
  explicit chan(std::size_t capacity) : s_(state::create(capacity)) {}
  // nil: the nil channel. Send and receive block forever, select never
  // finds it ready, close throws closed_channel.
  static chan nil() noexcept { return chan(adopt_tag{}, nullptr); }

  chan(const chan& o) noexcept : s_(o.s_) {
    if (s_ != nullptr) s_->retain();
  }
  chan(chan&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  chan& operator=(const chan& o) noexcept {
    chan(o).swap(*this);
    return *this;
  }
  chan& operator=(chan&& o) noexcept {
    chan(std::move(o)).swap(*this);
    return *this;
  }
  ~chan() {
    if (s_ != nullptr) s_->release();
  }
  void swap(chan& o) noexcept { std::swap(s_, o.s_); }

  // send: deliver `value`: to a waiting receiver, else into the buffer if
  // there is room, else block until a receiver takes it. Throws
  // closed_channel("send on closed channel") if the channel is closed
  // (also when it is closed while the sender waits); the value is then
  // dropped. From fibers and plain threads.
  void send(T value) const {
    detail::preempt_point();
    if (s_ == nullptr) detail::park_forever(detail::wait_reason::chan_send);
    if constexpr (traits::boxed) {
      typename traits::stored b = traits::make(std::move(value));
      s_->send(b);
    } else {
      s_->send(value);
    }
  }

  // recv: the next value, blocking until there is one; std::nullopt once
  // the channel is closed and its buffer drained. From fibers and plain
  // threads.
  std::optional<T> recv() const {
    detail::preempt_point();
    std::optional<T> r;
    recv_into(r);
    return r;
  }

  // close: no more values will be sent. Wakes every blocked receiver (they
  // get std::nullopt once the buffer is drained) and every blocked sender
  // (they throw). Throws closed_channel: "close of closed channel",
  // "close of nil channel".
  void close() const {
    detail::note_entry();
    if (s_ == nullptr) detail::throw_closed_channel("close of nil channel");
    s_->close();
  }

  // size: values buffered now (a snapshot). capacity: the buffer size.
  // Both 0 for the nil channel.
  std::size_t size() const noexcept {
    return s_ == nullptr ? 0 : s_->count.load(std::memory_order_relaxed);
  }
  std::size_t capacity() const noexcept { return s_ == nullptr ? 0 : s_->cap; }

  friend bool operator==(const chan& a, const chan& b) noexcept { return a.s_ == b.s_; }

  // Range-for: `for (T v : ch)` receives until the channel is closed and
  // drained. Each value is handed out as an rvalue (T&&), so move-only T
  // works; bind it with `T v`, `auto v`, `auto&&` or `const auto&`.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = T&&;
    using iterator_concept = std::input_iterator_tag;

    iterator() = default;
    T&& operator*() const noexcept { return std::move(*cur_); }
    iterator& operator++() {
      cur_.reset();
      detail::note_entry();
      c_->recv_into(cur_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.cur_.has_value();
    }

   private:
    friend class chan;
    explicit iterator(const chan* c) : c_(c) {
      detail::note_entry();
      c->recv_into(cur_);
    }
    const chan* c_ = nullptr;
    mutable std::optional<T> cur_;
  };
  iterator begin() const { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  friend struct detail::chan_access;
  // A tag, so that chan<int> c(0) is unbuffered, not a null state.
  struct adopt_tag {};
  chan(adopt_tag, state* s) noexcept : s_(s) {}

  // recv_into: receive into the empty `out` (no intermediate move).
  void recv_into(std::optional<T>& out) const {
    if (s_ == nullptr) detail::park_forever(detail::wait_reason::chan_recv);
    if constexpr (traits::boxed) {
      std::optional<typename traits::stored> b;
      s_->recv(b);
      if (b) out.emplace(std::move(**b));
    } else {
      s_->recv(out);
    }
  }

  state* s_;
};

}  // namespace weft
