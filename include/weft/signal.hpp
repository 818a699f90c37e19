#pragma once
// weft/signal.hpp: receive signals as channel values (Go's signal.Notify).
//
//   weft::chan<int> sigs = weft::signal::notify({SIGINT, SIGTERM});
//   int sig = *sigs.recv();           // or a recv_case in a select
//   weft::signal::stop(sigs);         // the previous dispositions are back
//
// While a channel is registered for a signal, the signal no longer has its
// default effect (a SIGTERM does not end the process): it is sent to every
// channel registered for it, without blocking. Each channel holds as many
// signals as it was registered for; a signal arriving while its channel is
// full is dropped, as in Go (signals of one kind that arrive together are
// merged by the kernel anyway).
//
// How: notify installs a handler (sigaction, SA_RESTART | SA_ONSTACK) that
// only records the signal and writes a byte to a pipe, so it is safe in any
// thread at any moment; a fiber of the runtime waits on the pipe through
// the netpoller and sends to the channels. Signals that arrive while no
// runtime runs are delivered once one runs and a channel is registered.
// Like any fiber waiting on the netpoller, that fiber keeps the runtime
// from reporting a deadlock while a channel is registered (Go behaves the
// same way): a program waiting for SIGTERM is not stuck.
//
// Synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) and
// SIGKILL, SIGSTOP cannot be notified.

#include <initializer_list>

#include "weft/chan.hpp"
#include "weft/detail/cxx20.hpp"

namespace weft::signal {

// notify: a new channel that receives the number of each of `signals` as
// it arrives. Throws std::invalid_argument for a signal that cannot be
// notified (see above), std::logic_error when no runtime is running (the
// delivering fiber is the runtime's), std::system_error if sigaction or
// pipe2 fail. Any fiber or thread while a runtime runs.
chan<int> notify(std::initializer_list<int> signals);

// stop: `ch` receives no more signals once stop returns (Go's
// signal.Stop); it is not closed. A signal that no channel is registered
// for any more gets back the disposition it had before the first notify.
// Does nothing for a channel notify did not return, or one already
// stopped. Any fiber or thread, with or without a runtime.
void stop(const chan<int>& ch);

}  // namespace weft::signal
