// Command cpudilute models one service release whose per-request CPU regression is hidden by
// everything else the release changed. Requests arrive open loop at -rate per second (Poisson
// arrivals and payload sizes from -seed) into a queue of 2×rate; ONE worker serves them, and a
// request that finds the queue full is dropped, so a process that gets less CPU serves fewer
// requests. Each request's payload (500..1500 bytes, 1000 on average) passes, 64 bytes at a
// time, through three functions that each spend their time in their own loop, so their self CPU
// is clear: main.parse (~21% of a request's CPU), main.encode (~40%) and main.checksum (~37%);
// about 0.9 ms of CPU per request on a current x86 server core.
//
// Modes:
//   - baseline:  the request path only.
//   - candidate: main.encode does 30% more work per request; nothing else on the request path
//     changes. Besides, main.refreshCache rebuilds a cache entry of 8000 small objects
//     (main.buildEntry, ~1.3 MB) every 10 ms and keeps the newest 30 (~40 MB live): ~130 MB/s,
//     ~800k objects/s. The allocator and the GC this keeps busy (runtime frames under
//     main.buildEntry and runtime.gcBgMarkWorker, runtime.bgsweep) cost about half again the
//     baseline process's CPU at the default rate; refreshCache's and buildEntry's own loops
//     stay small.
//   - hog:       no requests; main.hog spins on -hog-threads threads forever. Pinned with
//     taskset to the CPU of candidate processes, it takes CPU from them: they serve fewer
//     requests (and refresh their cache less often).
//
// What a correct tool finds, candidate against baseline: main.encode costs 30% more CPU per
// request served; main.parse and main.checksum cost the same per request; main.refreshCache
// (main.buildEntry) allocates where the baseline allocated nothing. What must not fool it: the
// GC's growth dilutes every request function's share of the profile (encode's share barely
// moves, parse's and checksum's fall), and next to the hog the candidate's request functions
// spend less CPU in total than the baseline's, because it serves fewer requests, while per
// request encode is still +30%.
//
// Every process serves net/http/pprof and /healthz on -addr, and logs to stderr the address it
// listens on and, every 10 s and when stopped by SIGINT or SIGTERM, the requests served and
// dropped so far ("served=N dropped=M"). With -otlp it reports its work every second to that
// OTLP/HTTP receiver as OTLP/JSON: one SERVER span "GET /work" per request served (from its
// arrival, so queueing counts, to its end) and the cumulative counter
// http_requests_total{code="200"}.
//
// CPU profiles on Linux are sampled at the scheduler tick, and three things keep the samples
// true to where the CPU goes (each is explained where it is done): requests vary in size and
// interleave the three functions block by block (handle); baseline and candidate processes run
// with GODEBUG=asyncpreemptoff=1, re-executing themselves to get it (withoutAsyncPreemption);
// and they run with at least two Ps, also when pinned to one CPU (main).
package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Work per request, in loop iterations (1.1..1.3 ns each) per payload byte; payloads are
// 500..1500 bytes, 1000 on average. Each function spends its time in its own loop, so a slower
// function shows up in its own (self) share.
const (
	parseWork    = 170
	encodeWork   = 320
	checksumWork = 295
	// The candidate's encode: 30% more.
	encodeWorkCandidate = encodeWork * 13 / 10
	// Payload sizes in bytes: uniform in [minPayload, maxPayload], handled in blocks of
	// blockSize.
	minPayload = 500
	maxPayload = 1500
	blockSize  = 64
)

// The candidate's cache: every cacheInterval a new entry of entryObjects objects of
// cacheObject's size (~1 MB), of which the newest cacheEntries are kept alive.
const (
	cacheInterval = 10 * time.Millisecond
	entryObjects  = 8000
	cacheEntries  = 30
)

var sink uint64

//go:noinline
func parse(x uint64, size int) uint64 {
	for i := 0; i < parseWork*size; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func encode(x uint64, size, work int) uint64 {
	for i := 0; i < work*size; i++ {
		x = x*2862933555777941757 + 3037000493
	}
	return x
}

//go:noinline
func checksum(x uint64, size int) uint64 {
	for i := 0; i < checksumWork*size; i++ {
		x = x*1099511628211 + 14695981039346656037
	}
	return x
}

// handle serves one request: its payload, block by block, passes parse, encode and checksum,
// so its cost is proportional to the payload size. (The blocks matter: CPU profile samples are
// taken at the kernel's scheduler tick, and the samples of a short burst of work that starts on
// a timer wakeup are not spread evenly over the burst. With each function one stretch of the
// request, parse, run first, got ~20% fewer samples than its share and checksum, run last,
// ~10% more. Varying sizes keep the requests from keeping one phase to the tick.)
//
//go:noinline
func handle(r request, encodeIterations int) uint64 {
	x := r.payload
	for done := 0; done < r.size; done += blockSize {
		n := r.size - done
		if n > blockSize {
			n = blockSize
		}
		x = parse(x, n)
		x = encode(x, n, encodeIterations)
		x = checksum(x, n)
	}
	return x
}

// cacheObject is one small heap object of a cache entry (160 bytes); the pointers from the
// entry and from object to object give the GC work.
type cacheObject struct {
	next  *cacheObject
	key   uint64
	value [18]uint64
}

// buildEntry allocates one cache entry: many small linked objects.
//
//go:noinline
func buildEntry(seed uint64) []*cacheObject {
	entry := make([]*cacheObject, entryObjects)
	var prev *cacheObject
	for i := range entry {
		o := &cacheObject{next: prev, key: seed + uint64(i)}
		entry[i] = o
		prev = o
	}
	return entry
}

// cache holds the newest cacheEntries entries. It is a package variable so that the entries stay
// reachable (a local array that is only written would be dead to the GC).
var cache [cacheEntries][]*cacheObject

// refreshCache rebuilds a cache entry every cacheInterval and keeps the newest cacheEntries.
//
//go:noinline
func refreshCache() {
	tick := time.NewTicker(cacheInterval)
	defer tick.Stop()
	for n := uint64(0); ; n++ {
		<-tick.C
		cache[n%cacheEntries] = buildEntry(n)
	}
}

// hog spins forever (main.hog in the hog's CPU profile).
//
//go:noinline
func hog(x uint64) {
	for {
		x = x*6364136223846793005 + 1
		if x == 0 {
			sink = x
		}
	}
}

// request is one arrival: when it arrived and what it carries.
type request struct {
	arrived time.Time
	payload uint64
	size    int // bytes
}

// span is one served request, as reported.
type span struct {
	start, end int64 // Unix nanoseconds
}

// counts of requests, read by the log and the exporter.
var served, dropped atomic.Int64

// done holds the requests served since the last export.
var done struct {
	sync.Mutex
	spans []span
}

// generate puts requests into queue at rate per second, with exponential gaps (open loop: the
// arrivals do not wait for the worker), dropping those that find the queue full.
func generate(rate float64, rng *rand.Rand, queue chan<- request) {
	next := time.Now()
	for {
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case queue <- request{arrived: next, payload: rng.Uint64(), size: minPayload + rng.Intn(maxPayload-minPayload+1)}:
		default:
			dropped.Add(1)
		}
	}
}

// serve is the one worker. It yields after each request, as a server waiting for its next read
// would, so that with a backlog the arrivals and the exporter still get their turns.
func serve(queue <-chan request, encodeIterations int, record bool) {
	for r := range queue {
		sink = handle(r, encodeIterations)
		end := time.Now()
		served.Add(1)
		if record {
			done.Lock()
			done.spans = append(done.spans, span{start: r.arrived.UnixNano(), end: end.UnixNano()})
			done.Unlock()
		}
		runtime.Gosched()
	}
}

// OTLP/JSON (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase
// field names, trace and span ids as hex, 64-bit integers as decimal strings, enums as numbers.
type (
	anyValue struct {
		StringValue *string `json:"stringValue,omitempty"`
		IntValue    *string `json:"intValue,omitempty"`
	}
	keyValue struct {
		Key   string   `json:"key"`
		Value anyValue `json:"value"`
	}
	resource struct {
		Attributes []keyValue `json:"attributes"`
	}
	scope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpSpan struct {
		TraceID           string     `json:"traceId"`
		SpanID            string     `json:"spanId"`
		Name              string     `json:"name"`
		Kind              int        `json:"kind"`
		StartTimeUnixNano string     `json:"startTimeUnixNano"`
		EndTimeUnixNano   string     `json:"endTimeUnixNano"`
		Attributes        []keyValue `json:"attributes"`
	}
	scopeSpans struct {
		Scope scope      `json:"scope"`
		Spans []otlpSpan `json:"spans"`
	}
	resourceSpans struct {
		Resource   resource     `json:"resource"`
		ScopeSpans []scopeSpans `json:"scopeSpans"`
	}
	traceRequest struct {
		ResourceSpans []resourceSpans `json:"resourceSpans"`
	}
	numberDataPoint struct {
		Attributes        []keyValue `json:"attributes"`
		StartTimeUnixNano string     `json:"startTimeUnixNano"`
		TimeUnixNano      string     `json:"timeUnixNano"`
		AsInt             string     `json:"asInt"`
	}
	metric struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Unit        string `json:"unit"`
		Sum         struct {
			DataPoints             []numberDataPoint `json:"dataPoints"`
			AggregationTemporality int               `json:"aggregationTemporality"`
			IsMonotonic            bool              `json:"isMonotonic"`
		} `json:"sum"`
	}
	scopeMetrics struct {
		Scope   scope    `json:"scope"`
		Metrics []metric `json:"metrics"`
	}
	resourceMetrics struct {
		Resource     resource       `json:"resource"`
		ScopeMetrics []scopeMetrics `json:"scopeMetrics"`
	}
	metricsRequest struct {
		ResourceMetrics []resourceMetrics `json:"resourceMetrics"`
	}
)

func str(key, value string) keyValue {
	return keyValue{Key: key, Value: anyValue{StringValue: &value}}
}

func integer(key string, value int64) keyValue {
	s := strconv.FormatInt(value, 10)
	return keyValue{Key: key, Value: anyValue{IntValue: &s}}
}

func nanos(t int64) string { return strconv.FormatInt(t, 10) }

// exporter reports the work of each second to an OTLP/HTTP receiver at base.
type exporter struct {
	base     string
	resource resource
	scope    scope
	started  int64
	client   *http.Client
}

func (e *exporter) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range tick.C {
		done.Lock()
		spans := done.spans
		done.spans = nil
		done.Unlock()
		if len(spans) > 0 {
			e.post("/v1/traces", e.traces(spans))
		}
		e.post("/v1/metrics", e.metrics(served.Load(), time.Now().UnixNano()))
	}
}

func (e *exporter) traces(spans []span) any {
	ids := make([]byte, 24*len(spans))
	if _, err := crand.Read(ids); err != nil {
		log.Printf("random span ids: %v", err)
	}
	out := make([]otlpSpan, len(spans))
	for i, s := range spans {
		id := ids[24*i : 24*i+24]
		out[i] = otlpSpan{
			TraceID:           hex.EncodeToString(id[:16]),
			SpanID:            hex.EncodeToString(id[16:]),
			Name:              "GET /work",
			Kind:              2, // SPAN_KIND_SERVER
			StartTimeUnixNano: nanos(s.start),
			EndTimeUnixNano:   nanos(s.end),
			Attributes: []keyValue{
				str("http.request.method", "GET"),
				str("http.route", "/work"),
				integer("http.response.status_code", 200),
			},
		}
	}
	return traceRequest{ResourceSpans: []resourceSpans{{
		Resource:   e.resource,
		ScopeSpans: []scopeSpans{{Scope: e.scope, Spans: out}},
	}}}
}

func (e *exporter) metrics(total int64, now int64) any {
	var m metric
	m.Name = "http_requests_total"
	m.Description = "Requests served."
	m.Unit = "{request}"
	m.Sum.AggregationTemporality = 2 // AGGREGATION_TEMPORALITY_CUMULATIVE
	m.Sum.IsMonotonic = true
	m.Sum.DataPoints = []numberDataPoint{{
		Attributes:        []keyValue{str("code", "200"), str("http.route", "/work")},
		StartTimeUnixNano: nanos(e.started),
		TimeUnixNano:      nanos(now),
		AsInt:             strconv.FormatInt(total, 10),
	}}
	return metricsRequest{ResourceMetrics: []resourceMetrics{{
		Resource:     e.resource,
		ScopeMetrics: []scopeMetrics{{Scope: e.scope, Metrics: []metric{m}}},
	}}}
}

// post sends one request; failures are logged, never fatal.
func (e *exporter) post(path string, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		log.Printf("export %s: %v", path, err)
		return
	}
	resp, err := e.client.Post(e.base+path, "application/json", bytes.NewReader(data))
	if err != nil {
		log.Printf("export %s: %v", path, err)
		return
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		log.Printf("export %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
}

// withoutAsyncPreemption re-executes the program (same process id, arguments and environment)
// with GODEBUG=asyncpreemptoff=1, unless GODEBUG already sets asyncpreemptoff. With
// asynchronous preemption, a worker that waits for a CPU for over 10 ms (next to the hog, or on
// any busy machine) is sent the preemption signal while it is off the CPU; back on it, the
// profiling signal due from the tick that took it off comes right after, and the sample lands
// in runtime.asyncPreempt instead of parse, encode or checksum: next to the hog, most of the
// request functions' samples did. The worker calls short functions all the time, so
// cooperative preemption at their entry still works.
func withoutAsyncPreemption() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "asyncpreemptoff=") {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatalf("find own executable: %v", err)
	}
	env := []string{"GODEBUG=" + godebug + "asyncpreemptoff=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	log.Fatalf("re-execute with GODEBUG=asyncpreemptoff=1: %v", syscall.Exec(exe, os.Args, env))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address for net/http/pprof and /healthz")
	mode := flag.String("mode", "baseline", "baseline, candidate (encode +30%, allocating refreshCache) or hog")
	rate := flag.Float64("rate", 200, "requests arriving per second (open loop)")
	seed := flag.Int64("seed", 1, "seed of the request payloads and arrival times")
	otlp := flag.String("otlp", "", "base URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318; empty: no export")
	service := flag.String("service", "cpudilute", "service.name")
	version := flag.String("version", "", "service.version (empty: none)")
	instance := flag.String("instance", "", "service.instance.id (default: the listen address)")
	hogThreads := flag.Int("hog-threads", 6, "-mode=hog: threads spinning (GOMAXPROCS is raised to match)")
	flag.Parse()
	log.SetPrefix("cpudilute: ")

	encodeIterations := encodeWork
	switch *mode {
	case "baseline", "hog":
	case "candidate":
		encodeIterations = encodeWorkCandidate
	default:
		log.Fatalf("unknown -mode %q: use baseline, candidate or hog", *mode)
	}
	if *rate <= 0 {
		log.Fatalf("-rate must be positive, not %v", *rate)
	}
	if *mode != "hog" {
		withoutAsyncPreemption()
		// At least two Ps, also when pinned to one CPU: the worker and the cache refresher (with
		// the GC) then run on threads of their own, as on any machine with two or more CPUs.
		// On one P they would share a thread, and with its CPU contended (the hog) the CPU
		// samples of that thread, taken at the scheduler tick that ends its time slice, fall
		// more on whichever of them runs late in a slice.
		if runtime.GOMAXPROCS(0) < 2 {
			runtime.GOMAXPROCS(2)
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("mode=%s listening on %s", *mode, ln.Addr())
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	go func() { log.Fatal(http.Serve(ln, nil)) }()

	if *mode == "hog" {
		if runtime.GOMAXPROCS(0) < *hogThreads {
			runtime.GOMAXPROCS(*hogThreads)
		}
		for i := 0; i < *hogThreads; i++ {
			go hog(uint64(i) + 1)
		}
		select {}
	}

	record := *otlp != ""
	if record {
		if *instance == "" {
			*instance = ln.Addr().String()
		}
		e := &exporter{
			base:     strings.TrimRight(*otlp, "/"),
			resource: resource{Attributes: []keyValue{str("service.name", *service)}},
			scope:    scope{Name: "cpudilute"},
			started:  time.Now().UnixNano(),
			client:   &http.Client{Timeout: 5 * time.Second},
		}
		if *version != "" {
			e.resource.Attributes = append(e.resource.Attributes, str("service.version", *version))
		}
		e.resource.Attributes = append(e.resource.Attributes, str("service.instance.id", *instance))
		go e.run()
	}
	if *mode == "candidate" {
		go refreshCache()
	}
	queue := make(chan request, int(2**rate)+1)
	go generate(*rate, rand.New(rand.NewSource(*seed)), queue)
	go serve(queue, encodeIterations, record)

	report := func() {
		log.Printf("mode=%s served=%d dropped=%d queued=%d", *mode, served.Load(), dropped.Load(), len(queue))
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(10 * time.Second)
	for {
		select {
		case <-tick.C:
			report()
		case s := <-stop:
			report()
			fmt.Fprintf(os.Stderr, "cpudilute: stopped by %v\n", s)
			os.Exit(0)
		}
	}
}
