// chan.go: the channel workloads: pingpong, chan, skynet, select.
package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// pingpong: two goroutines, one unbuffered channel each way; n round trips;
// ns per round trip.
func pingpong(p params) result {
	ping := make(chan int64)
	pong := make(chan int64)
	go func() {
		for i := int64(0); i < p.n; i++ {
			pong <- <-ping
		}
	}()
	faults0 := minorFaults()
	t0 := time.Now()
	for i := int64(0); i < p.n; i++ {
		ping <- i
		if v := <-pong; v != i {
			fail("pingpong: sent %d, got back %d", i, v)
		}
	}
	ns := nsPer(t0, p.n)
	return result{value: ns, extra: map[string]float64{"minor_faults": minorFaults() - faults0}}
}

var _ = register(workload{"pingpong", "ns/roundtrip", 0, 1000000, pingpong})

// chanMPMC: one channel of capacity 1024, 4 producers sending the values
// 0..n-1 between them (each a contiguous range), 4 consumers draining it
// until closed; ns per value. Count and sum are checked.
func chanMPMC(p params) result {
	const producers, consumers = 4, 4
	ch := make(chan int64, 1024)
	var count, sum int64
	var prod, cons sync.WaitGroup
	prod.Add(producers)
	cons.Add(consumers)
	t0 := time.Now()
	for c := 0; c < consumers; c++ {
		go func() {
			var k, s int64
			for v := range ch {
				k++
				s += v
			}
			atomic.AddInt64(&count, k)
			atomic.AddInt64(&sum, s)
			cons.Done()
		}()
	}
	for q := int64(0); q < producers; q++ {
		lo, hi := p.n*q/producers, p.n*(q+1)/producers
		go func() {
			for v := lo; v < hi; v++ {
				ch <- v
			}
			prod.Done()
		}()
	}
	prod.Wait()
	close(ch)
	cons.Wait()
	r := result{value: nsPer(t0, p.n)}
	if count != p.n || sum != p.n*(p.n-1)/2 {
		fail("chan: received %d values summing to %d, want %d summing to %d", count, sum, p.n, p.n*(p.n-1)/2)
	}
	return r
}

var _ = register(workload{"chan", "ns/value", 0, 10000000, chanMPMC})

// skynetNode: sends num if this is a leaf, else spawns 10 children over
// [num, num+size) and sends the sum of what they send on its own unbuffered
// channel.
func skynetNode(out chan<- int64, num, size int64) {
	if size == 1 {
		out <- num
		return
	}
	rc := make(chan int64)
	child := size / 10
	for i := int64(0); i < 10; i++ {
		go skynetNode(rc, num+i*child, child)
	}
	var sum int64
	for i := 0; i < 10; i++ {
		sum += <-rc
	}
	out <- sum
}

// skynet: the classic: 10 children per node down to n leaves (n a power of
// ten), leaf i sends i; ms for the whole tree. The total is checked.
func skynet(p params) result {
	leaves := int64(1)
	for leaves < p.n {
		leaves *= 10
	}
	if leaves != p.n {
		fail("skynet: n must be a power of 10, got %d", p.n)
	}
	out := make(chan int64)
	faults0 := minorFaults()
	t0 := time.Now()
	go skynetNode(out, 0, p.n)
	total := <-out
	ms := float64(time.Since(t0).Nanoseconds()) / 1e6
	faults := minorFaults() - faults0
	if want := p.n * (p.n - 1) / 2; total != want {
		fail("skynet: total %d, want %d", total, want)
	}
	return result{value: ms, extra: map[string]float64{"minor_faults": faults}}
}

var _ = register(workload{"skynet", "ms", 0, 1000000, skynet})

// selectBench: one receiver selecting over 4 unbuffered channels, each fed by
// its own sender goroutine (n values between them), plus a timeout case with a
// fresh time.After(1ms) per select as Go code writes it; the receiver selects
// until all n values arrived; ns per select (timeouts count as selects).
func selectBench(p params) result {
	const senders = 4
	var chans [senders]chan int64
	for s := range chans {
		chans[s] = make(chan int64)
	}
	for s := int64(0); s < senders; s++ {
		lo, hi, c := p.n*s/senders, p.n*(s+1)/senders, chans[s]
		go func() {
			for v := lo; v < hi; v++ {
				c <- v
			}
		}()
	}
	var got, sum, selects, timeouts int64
	t0 := time.Now()
	for got < p.n {
		selects++
		select {
		case v := <-chans[0]:
			got, sum = got+1, sum+v
		case v := <-chans[1]:
			got, sum = got+1, sum+v
		case v := <-chans[2]:
			got, sum = got+1, sum+v
		case v := <-chans[3]:
			got, sum = got+1, sum+v
		case <-time.After(time.Millisecond):
			timeouts++
		}
	}
	r := result{value: nsPer(t0, selects), extra: map[string]float64{"timeouts": float64(timeouts)}}
	if sum != p.n*(p.n-1)/2 {
		fail("select: values sum to %d, want %d", sum, p.n*(p.n-1)/2)
	}
	return r
}

var _ = register(workload{"select", "ns/select", 0, 1000000, selectBench})
