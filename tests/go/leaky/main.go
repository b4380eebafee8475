// Command leaky serves net/http/pprof and, in each -mode, starts goroutines the way a real leak
// (or a healthy non-leak) does, at -rate per second. The end-to-end leak tests scrape its
// goroutine profiles and expect one finding per leaking mode, with the right blocking frame and
// tag, and none for the healthy modes.
//
// Leaking modes:
//   - chanrecv:  a receiver ranges over a channel that is never closed
//   - detached:  a worker selects on a context made from context.Background() (not its parent)
//   - ticker:    a goroutine ranges over a time.Ticker that is never stopped
//   - send:      a sender blocks on an unbuffered channel nobody reads
//   - waitgroup: a waiter blocks on a sync.WaitGroup whose Done is never called
//
// Healthy modes:
//   - pool:      a fixed pool of 32 workers waiting for jobs (large but flat)
//   - gc:        heavy allocation that keeps the GC workers busy, no goroutine growth
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof"
	"sync"
	"time"
)

var sink []byte

//go:noinline
func receiveForever(ch chan int) {
	for v := range ch {
		_ = v
	}
}

//go:noinline
func detachedWorker(parent context.Context, work chan int) {
	_ = parent // the bug: the worker's context should derive from parent
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-work:
			_ = w
		}
	}
}

//go:noinline
func tickForever() {
	t := time.NewTicker(time.Hour)
	for range t.C {
	}
}

//go:noinline
func sendForever(ch chan int) {
	ch <- 1
}

//go:noinline
func waitForever(wg *sync.WaitGroup) {
	wg.Wait()
}

//go:noinline
func poolWorker(jobs chan func()) {
	for job := range jobs {
		job()
	}
}

//go:noinline
func allocate() {
	for {
		for i := 0; i < 1000; i++ {
			sink = make([]byte, 64<<10)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", "pool", "chanrecv, detached, ticker, send, waitgroup, pool or gc")
	rate := flag.Float64("rate", 1, "goroutines started per second (leaking modes)")
	flag.Parse()

	start := func(leak func()) {
		go func() {
			every := time.Duration(float64(time.Second) / *rate)
			for {
				leak()
				time.Sleep(every)
			}
		}()
	}
	switch *mode {
	case "chanrecv":
		start(func() { go receiveForever(make(chan int)) })
	case "detached":
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		start(func() { go detachedWorker(parent, make(chan int)) })
	case "ticker":
		start(func() { go tickForever() })
	case "send":
		start(func() { go sendForever(make(chan int)) })
	case "waitgroup":
		start(func() {
			var wg sync.WaitGroup
			wg.Add(1)
			go waitForever(&wg)
		})
	case "pool":
		jobs := make(chan func())
		for i := 0; i < 32; i++ {
			go poolWorker(jobs)
		}
	case "gc":
		go allocate()
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	log.Fatal(http.ListenAndServe(*addr, nil))
}
