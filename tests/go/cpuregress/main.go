// Command cpuregress serves net/http/pprof while one goroutine handles synthetic requests, each
// passing through five functions of fixed cost. With -mode=slow, checksum does 30% more work per
// request; nothing else changes. The end-to-end test scrapes both modes and expects
// `slo-gate flame diff` to rank main.checksum first, and to find nothing between two fast runs.
package main

import (
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof"
)

// Work per request, in loop iterations. Each function spends its time in its own loop, so a
// slower function shows up in its own (self) share.
const (
	decodeWork   = 20000
	validateWork = 15000
	checksumWork = 30000
	renderWork   = 20000
	compressWork = 15000
)

var sink uint64

//go:noinline
func decode(x uint64) uint64 {
	for i := 0; i < decodeWork; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func validate(x uint64) uint64 {
	for i := 0; i < validateWork; i++ {
		x = x*2862933555777941757 + 3037000493
	}
	return x
}

//go:noinline
func checksum(x uint64, work int) uint64 {
	for i := 0; i < work; i++ {
		x = x*1099511628211 + 14695981039346656037
	}
	return x
}

//go:noinline
func render(x uint64) uint64 {
	for i := 0; i < renderWork; i++ {
		x = x*3935559000370003845 + 2691343689449507681
	}
	return x
}

//go:noinline
func compress(x uint64) uint64 {
	for i := 0; i < compressWork; i++ {
		x = x*6364136223846793005 + 1
	}
	return x
}

//go:noinline
func handle(x uint64, checksumIterations int) uint64 {
	x = decode(x)
	x = validate(x)
	x = checksum(x, checksumIterations)
	x = render(x)
	return compress(x)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", "fast", "fast, or slow: checksum does 30% more work")
	flag.Parse()
	work := checksumWork
	switch *mode {
	case "fast":
	case "slow":
		work = checksumWork * 13 / 10
	default:
		log.Fatalf("unknown -mode %q: use fast or slow", *mode)
	}
	go func() {
		x := uint64(1)
		for {
			x = handle(x, work)
			sink = x
		}
	}()
	log.Fatal(http.ListenAndServe(*addr, nil))
}
