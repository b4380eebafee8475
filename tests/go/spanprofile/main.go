// Command spanprofile serves two routes, /slow and /fast, and labels the CPU each request burns
// with its own span id, the way Grafana's otel-profiling-go does: `runtime/pprof.Do` sets the
// pprof label `span_id` (16 hexadecimal digits) around the handler, so every CPU sample taken
// while it runs carries the label. A loop inside the program calls both routes over HTTP
// without pause; `/spans` lists the span ids each route used so far (JSON), and
// `/debug/pprof/` serves the profiles. The end-to-end test scrapes the CPU profile and asks for
// the flame graph of the slow route's span ids: it must hold main.slowWork and not main.fastWork.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"runtime/pprof"
	"sync"
	"time"
)

var (
	sink  uint64
	mu    sync.Mutex
	spans = map[string][]string{"slow": {}, "fast": {}}
)

//go:noinline
func slowWork(x uint64) uint64 {
	for i := 0; i < 60000000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func fastWork(x uint64) uint64 {
	for i := 0; i < 3000000; i++ {
		x = x*2862933555777941757 + 3037000493
	}
	return x
}

func newSpanID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		log.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// traced runs work under a new span id, labelled for the CPU profiler.
func traced(route string, work func(uint64) uint64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := newSpanID()
		mu.Lock()
		spans[route] = append(spans[route], id)
		mu.Unlock()
		pprof.Do(r.Context(), pprof.Labels("span_id", id), func(context.Context) {
			sink += work(uint64(len(id)))
		})
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, id+"\n")
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	http.HandleFunc("/slow", traced("slow", slowWork))
	http.HandleFunc("/fast", traced("fast", fastWork))
	http.HandleFunc("/spans", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(spans)
	})
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + listener.Addr().String()
	go func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for {
			for _, route := range []string{"/slow", "/fast", "/fast", "/fast"} {
				if resp, err := client.Get(base + route); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
	}()
	log.Fatal(http.Serve(listener, nil))
}
