// go-echo: the Go peer of the C10K echo comparison (perf/README-c10k.md): one
// goroutine per connection, blocking-style reads and writes on Go's netpoller,
// as a Go programmer writes it.
//
//	go-echo [ADDR]    ADDR default 127.0.0.1:7000; GOMAXPROCS as usual
//
// Runs until SIGINT or SIGTERM, then exits 0.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	addr := "127.0.0.1:7000"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "go-echo: listening on %s\n", ln.Addr())
	var stopping atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		stopping.Store(true)
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if stopping.Load() {
				os.Exit(0)
			}
			// e.g. EMFILE: back off and retry, as net/http does.
			fmt.Fprintln(os.Stderr, "go-echo:", err)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
