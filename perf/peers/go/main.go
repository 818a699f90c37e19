// go-bench: Go peers of weft-bench's workloads (perf/README.md).
//
//	go-bench WORKLOAD [--workers N] [--n COUNT] [--json]
//
// --workers sets GOMAXPROCS (default: all cores, except the workloads whose
// definition fixes it, e.g. yield = 1). The output line is the same as
// weft-bench's with "impl":"go", so tools/bench.py reads both alike.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type params struct {
	workers int
	n       int64
}

type result struct {
	value float64
	extra map[string]float64
}

type workload struct {
	name           string
	unit           string
	defaultWorkers int // 0 = all cores
	defaultN       int64
	fn             func(p params) result
}

var workloads []workload

func register(w workload) bool {
	workloads = append(workloads, w)
	return true
}

// rssBytes: VmRSS of this process, from /proc/self/status.
func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail("open /proc/self/status: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line[len("VmRSS:"):])
			kb, err := strconv.ParseUint(fields[0], 10, 64)
			if err != nil {
				fail("bad VmRSS line %q", line)
			}
			return kb * 1024
		}
	}
	fail("no VmRSS in /proc/self/status")
	return 0
}

// minorFaults: this process's minor page faults so far (getrusage
// RUSAGE_SELF ru_minflt). A workload that sets extra["minor_faults"] reports
// the faults of its measured part; otherwise main reports the delta around
// the whole workload function, as weft-bench does.
func minorFaults() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return float64(ru.Minflt)
}

// nsPer: elapsed time since t0 in ns, divided by count.
func nsPer(t0 time.Time, count int64) float64 {
	return float64(time.Since(t0).Nanoseconds()) / float64(count)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-bench: "+format+"\n", args...)
	os.Exit(1)
}

func usage() {
	names := make([]string, 0, len(workloads))
	for _, w := range workloads {
		names = append(names, w.name)
	}
	fmt.Fprintf(os.Stderr, "usage: go-bench WORKLOAD [--workers N] [--n COUNT] [--json]\nworkloads: %s\n",
		strings.Join(names, " "))
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var w *workload
	for i := range workloads {
		if workloads[i].name == os.Args[1] {
			w = &workloads[i]
		}
	}
	if w == nil {
		fmt.Fprintf(os.Stderr, "go-bench: unknown workload '%s'\n", os.Args[1])
		usage()
	}
	var p params
	json := false
	args := os.Args[2:]
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--json":
			json = true
		case args[i] == "--workers" && i+1 < len(args):
			v, err := strconv.Atoi(args[i+1])
			if err != nil || v < 0 {
				fail("bad --workers '%s'", args[i+1])
			}
			p.workers = v
			i++
		case args[i] == "--n" && i+1 < len(args):
			v, err := strconv.ParseInt(args[i+1], 10, 64)
			if err != nil || v < 0 {
				fail("bad --n '%s'", args[i+1])
			}
			p.n = v
			i++
		default:
			fmt.Fprintf(os.Stderr, "go-bench: bad argument '%s'\n", args[i])
			usage()
		}
	}
	if p.workers == 0 {
		p.workers = w.defaultWorkers
		if p.workers == 0 {
			p.workers = runtime.NumCPU()
		}
	}
	if p.n == 0 {
		p.n = w.defaultN
	}
	runtime.GOMAXPROCS(p.workers)
	faults0 := minorFaults()
	r := w.fn(p)
	if r.extra == nil {
		r.extra = map[string]float64{}
	}
	if _, ok := r.extra["minor_faults"]; !ok {
		r.extra["minor_faults"] = minorFaults() - faults0
	}
	keys := make([]string, 0, len(r.extra))
	for k := range r.extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if json {
		fmt.Printf(`{"bench":"%s","impl":"go","workers":%d,"n":%d,"value":%.3f,"unit":"%s"`,
			w.name, p.workers, p.n, r.value, w.unit)
		for _, k := range keys {
			fmt.Printf(`,"%s":%.3f`, k, r.extra[k])
		}
		fmt.Printf("}\n")
	} else {
		fmt.Printf("%-10s go    workers=%-3d n=%-10d %12.2f %s", w.name, p.workers, p.n, r.value, w.unit)
		for _, k := range keys {
			fmt.Printf("  %s=%.2f", k, r.extra[k])
		}
		fmt.Printf("\n")
	}
}
