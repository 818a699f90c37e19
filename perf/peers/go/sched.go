// sched.go: the scheduler workloads: spawn, yield, parked.
package main

import (
	"runtime"
	"sync"
	"time"
)

// spawn: from one goroutine, n `go` of a function that only calls wg.Done,
// then wait for all; ns per goroutine. Two rounds in one process: value is
// the first, second_round the second (warm stack and g caches).
func spawn(p params) result {
	r := result{extra: map[string]float64{}}
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		faults0 := minorFaults()
		t0 := time.Now()
		wg.Add(int(p.n))
		for i := int64(0); i < p.n; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		ns := nsPer(t0, p.n)
		faults := minorFaults() - faults0
		if round == 0 {
			r.value = ns
			r.extra["minor_faults"] = faults
		} else {
			r.extra["second_round"] = ns
			r.extra["second_round_faults"] = faults
		}
	}
	return r
}

var _ = register(workload{"spawn", "ns/fiber", 0, 1000000, spawn})

// yield: two goroutines calling runtime.Gosched n/2 times each; with
// GOMAXPROCS=1 every Gosched is a switch to the other; ns per switch.
func yield(p params) result {
	each := p.n / 2
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	for k := 0; k < 2; k++ {
		go func() {
			for i := int64(0); i < each; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return result{value: nsPer(t0, 2*each)}
}

var _ = register(workload{"yield", "ns/switch", 1, 10000000, yield})

// parked: n goroutines each lock a mutex, count themselves parked and wait on
// a sync.Cond until released; RSS bytes per parked goroutine (VmRSS after all
// are parked minus before spawning, over n). Then all are released and waited for.
func parked(p params) result {
	r := result{extra: map[string]float64{}}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	released := false
	var nparked int64
	allParked := make(chan struct{})
	var done sync.WaitGroup
	done.Add(int(p.n))
	before := rssBytes()
	faults0 := minorFaults()
	t0 := time.Now()
	for i := int64(0); i < p.n; i++ {
		go func() {
			mu.Lock()
			nparked++
			if nparked == p.n {
				close(allParked)
			}
			for !released {
				cond.Wait()
			}
			mu.Unlock()
			done.Done()
		}()
	}
	<-allParked
	// Every goroutine has counted itself under mu; Cond.Wait enqueues its
	// waiter before unlocking, so once we hold mu all n are on the Cond's
	// list. A goroutine between Unlock and gopark inside Wait is at most one
	// per other P, and its g and stack, the memory measured, already exist.
	mu.Lock()
	if nparked != p.n {
		fail("parked: %d of %d goroutines parked", nparked, p.n)
	}
	mu.Unlock()
	after := rssBytes()
	r.extra["minor_faults"] = minorFaults() - faults0
	r.value = float64(int64(after)-int64(before)) / float64(p.n)
	r.extra["park_ns"] = nsPer(t0, p.n)
	t1 := time.Now()
	mu.Lock()
	released = true
	mu.Unlock()
	cond.Broadcast()
	done.Wait()
	r.extra["release_ns"] = nsPer(t1, p.n)
	return r
}

var _ = register(workload{"parked", "bytes/fiber", 0, 1000000, parked})
