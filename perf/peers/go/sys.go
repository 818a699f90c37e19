// sys.go: the blocking-call workloads: blocking, handoff.
package main

import (
	"sort"
	"syscall"
	"time"
)

// blocking: n calls of syscall.Getpid, Go's raw system call path (no
// entersyscall: Go knows getpid cannot block); ns per call. syscall_ns is
// the same loop through syscall.Syscall(SYS_GETPID), which marks the P as in
// a system call and back, the work weft::blocking does.
func blocking(p params) result {
	pid := syscall.Getpid()
	t0 := time.Now()
	for i := int64(0); i < p.n; i++ {
		if syscall.Getpid() != pid {
			fail("blocking: getpid changed")
		}
	}
	raw := nsPer(t0, p.n)
	t1 := time.Now()
	for i := int64(0); i < p.n; i++ {
		if r, _, _ := syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0); int(r) != pid {
			fail("blocking: getpid changed")
		}
	}
	return result{value: raw, extra: map[string]float64{"syscall_ns": nsPer(t1, p.n)}}
}

var _ = register(workload{"blocking", "ns/call", 0, 1000000, blocking})

// handoff: how long goroutines queued behind a blocking system call wait.
// Each of n trials: goroutine A (here the main goroutine) starts B, which is
// runnable but cannot run while A holds the only P (GOMAXPROCS=1); A records
// t0 and enters a 50 ms syscall.Nanosleep (a blocking system call: entersyscall); B records t1 when
// it first runs (sysmon must take the P from A and hand it to another thread).
// value = median of t1-t0 over the trials in µs; min_us and max_us too.
func handoff(p params) result {
	const block = 50 * time.Millisecond
	ts := syscall.NsecToTimespec(int64(block))
	lat := make([]float64, 0, p.n)
	for i := int64(0); i < p.n; i++ {
		started := make(chan time.Time, 1)
		go func() { started <- time.Now() }()
		t0 := time.Now()
		sleepFully(ts)
		t1 := <-started
		lat = append(lat, float64(t1.Sub(t0).Nanoseconds())/1e3)
	}
	sort.Float64s(lat)
	return result{value: lat[len(lat)/2], extra: map[string]float64{"min_us": lat[0], "max_us": lat[len(lat)-1]}}
}

// sleepFully: nanosleep for ts, resumed after signals (Go's preemption
// signal, SIGURG, interrupts it with EINTR).
func sleepFully(ts syscall.Timespec) {
	for {
		var rem syscall.Timespec
		err := syscall.Nanosleep(&ts, &rem)
		if err == nil {
			return
		}
		if err != syscall.EINTR {
			fail("handoff: nanosleep: %v", err)
		}
		ts = rem
	}
}

var _ = register(workload{"handoff", "us", 1, 21, handoff})
