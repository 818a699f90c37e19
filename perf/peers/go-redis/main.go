// go-redis: the Go peer of perf/hiredis/hiredis_bench.cpp: many goroutines
// each running SET/GET pairs through redigo (Debian's
// golang-github-gomodule-redigo-dev) against a redis-server. Built in GOPATH
// mode against /usr/share/gocode by tools/hiredis_bench.py.
//
//	go-redis -port P [-clients 1000] [-ops 100]
//
// Prints the same JSON line as hiredis_bench (mode "go"): ops_per_s
// (commands), threads (peak OS threads, sampled every millisecond) and
// lateness_ms (worst lateness of a goroutine sleeping until each next
// millisecond while the clients run).
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

func threadsNow() int {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, _ := strconv.Atoi(fields[17]) // field 20 of the whole line
	return n
}

func main() {
	port := flag.Int("port", 0, "redis-server port")
	clients := flag.Int("clients", 1000, "concurrent clients")
	ops := flag.Int("ops", 100, "SET/GET pairs per client")
	flag.Parse()
	if *port == 0 {
		fmt.Fprintln(os.Stderr, "usage: go-redis -port P [-clients N] [-ops N]")
		os.Exit(2)
	}
	var stop atomic.Bool
	var peak atomic.Int64
	go func() {
		for !stop.Load() {
			if t := int64(threadsNow()); t > peak.Load() {
				peak.Store(t)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var worst time.Duration
	tickerDone := make(chan struct{})
	go func() {
		next := time.Now().Add(time.Millisecond)
		for !stop.Load() {
			time.Sleep(time.Until(next))
			if late := time.Since(next); late > worst {
				worst = late
			}
			next = next.Add(time.Millisecond)
			if next.Before(time.Now()) {
				next = time.Now().Add(time.Millisecond)
			}
		}
		close(tickerDone)
	}()
	var failures atomic.Int64
	addr := fmt.Sprintf("127.0.0.1:%d", *port)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c, err := redis.Dial("tcp", addr)
			if err != nil {
				failures.Add(1)
				return
			}
			defer c.Close()
			key := "bench:" + strconv.Itoa(id)
			for k := 0; k < *ops; k++ {
				val := strconv.Itoa(k)
				if s, err := redis.String(c.Do("SET", key, val)); err != nil || s != "OK" {
					failures.Add(1)
				}
				if g, err := redis.String(c.Do("GET", key)); err != nil || g != val {
					failures.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	stop.Store(true)
	<-tickerDone
	fmt.Printf("{\"bench\":\"hiredis\",\"mode\":\"go\",\"clients\":%d,\"ops\":%d,\"ops_per_s\":%.0f,"+
		"\"threads\":%d,\"lateness_ms\":%.2f,\"seconds\":%.3f,\"failures\":%d}\n",
		*clients, *ops, float64(2**clients**ops)/secs, peak.Load(), float64(worst)/1e6, secs,
		failures.Load())
	if failures.Load() != 0 {
		os.Exit(1)
	}
}
