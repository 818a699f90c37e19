// go-http: the Go net/http peer of the HTTP hello comparison
// (perf/README-c10k.md): a fixed small response to every request.
//
//	go-http [ADDR]    ADDR default 127.0.0.1:7000; GOMAXPROCS as usual
//
// Runs until SIGINT or SIGTERM, then exits 0.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

var hello = []byte("Hello, World!")

func main() {
	addr := "127.0.0.1:7000"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-http:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "go-http: listening on %s\n", ln.Addr())
	var stopping atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		stopping.Store(true)
		ln.Close()
	}()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	})
	err = http.Serve(ln, handler)
	if stopping.Load() {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "go-http:", err)
	os.Exit(1)
}
