package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// TestBenchTable is `make bench`'s table: the whole mesh (real Consul, every
// binary built without the race detector, loopback only) under bounded load
// from vegeta, each figure beside its reference, all measured in one run.
// It writes the table, the machine and the date to $BENCH_OUT/benchmarks.md
// and a latency plot beside it. Without BENCH_TABLE=1 it is skipped: it is a
// measurement, not a test, and takes several minutes.
//
// Every figure is a ratio against something measured in the same run on the
// same machine, because the absolute numbers say more about the machine (and
// whatever else it is doing) than about marketmesh.
func TestBenchTable(t *testing.T) {
	if os.Getenv("BENCH_TABLE") == "" {
		t.Skip("a measurement, not a test: make bench runs it (BENCH_TABLE=1)")
	}
	cfg := benchConfigFromEnv(t)
	rep := &benchReport{started: time.Now(), cfg: cfg}

	// The ceiling: a bare net/http JSON handler in a process of its own.
	bare := startBare(t)

	// Every process of the mesh talks to Consul through a counting proxy, so
	// the count includes the registry, the certificate and config watches.
	agent := meshtest.Consul(t)
	consulCount := startConsulCounter(t, agent.Addr)
	m := startMeshOn(t, agent, consulCount.addr,
		// What make run uses, not the e2e suite's faster test settings.
		"MARKETMESH_LOG_LEVEL=info",
		"MARKETMESH_CHECK_INTERVAL=2s",
		"PRODUCTS_VIEW_FLUSH=2s",
		"API_PART_TIMEOUT=300ms",
		"ORDERS_RECOVER_EVERY=5s",
		"PAYMENTS_CONFIRM_AFTER=2s",
		"MARKETMESH_DRAIN_DELAY=1s",
	)
	rpcTimeout := time.Second // config/local.yaml rpc.request_timeout

	// Idle: every process after start, before any load.
	time.Sleep(3 * time.Second)
	rep.rssIdle = m.rss(t)

	// Setup (not measured): a seller with 10k products, one product page
	// with an image and a publication, buyers for the checkout.
	_, seller := m.signup("bench-seller@example.com")
	_, reader := m.signup("bench-reader@example.com")
	seedStart := time.Now()
	searchHits := m.seedCatalog(t, seller, cfg.products)
	rep.seeded = fmt.Sprintf("%d products created through the api in %v", cfg.products, time.Since(seedStart).Round(time.Second))
	page := m.must(201, "POST", "/v1/products", seller, map[string]any{"name": "Bench Lamp", "category": "home/lighting", "brand": "Acme"})
	pid := page["id"].(string)
	if st, body := m.upload(seller, "product", pid, pngBytes(t, 64, 64)); st != 201 {
		t.Fatalf("upload: %d %v", st, body)
	}
	pub := m.must(201, "POST", "/v1/publications", seller, map[string]any{"product_id": pid, "title": "Bench Lamp",
		"price": map[string]any{"amount": 1999, "currency": "USD"}, "quantity": 5, "condition": "new"})
	pubID := pub["id"].(string)
	buyPub := m.seedPublication(seller, "Bench widget", 199, "USD", 1_000_000)
	buyers := make([]string, 16)
	for i := range buyers {
		_, buyers[i] = m.signup(fmt.Sprintf("bench-buyer-%d@example.com", i))
	}

	auth := http.Header{"Authorization": []string{"Bearer " + reader}}
	routes := []benchRoute{
		{class: "bare net/http JSON handler (the ceiling)", url: bare + "/healthz", bare: true},
		{class: "api GET /healthz (middleware, no RPC)", url: m.url + "/healthz", target: 0.8},
		{class: "api GET /v1/users/me (JWT + 1 RPC)", url: m.url + "/v1/users/me", header: auth, target: 0.25},
		{class: "api GET /v1/categories (1 RPC)", url: m.url + "/v1/categories", target: 0.3, single: true},
		{class: fmt.Sprintf("api GET /v1/products?q=phone+camera (%d of %d products)", searchHits, cfg.products), url: m.url + "/v1/products?q=phone+camera", search: true},
		{class: "api GET /v1/products/{id} (products + images + publications)", url: m.url + "/v1/products/" + pid, aggregate: true},
		{class: "api GET /v1/publications/{id} (publications + images, then products + users)", url: m.url + "/v1/publications/" + pubID, aggregate: true},
	}
	for _, r := range routes { // every route answers 200 before it is loaded
		req, _ := http.NewRequest("GET", r.url, nil)
		maps.Copy(req.Header, r.header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", r.class, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d before the load", r.class, resp.StatusCode)
		}
	}

	// From here on every api request and every Consul request counts.
	consulBefore := consulCount.snapshot()
	var apiRequests int64
	loadStart := time.Now()

	// Peak throughput: closed loop, 64 connections, as fast as they go.
	for i := range routes {
		r := &routes[i]
		// A second of the same load first, not counted: connections are
		// set up and caches warm before the measured run.
		warm := attack(t, r, vegeta.Rate{}, time.Second, cfg.connections)
		r.peak = attack(t, r, vegeta.Rate{}, cfg.peakFor, cfg.connections)
		if !r.bare {
			apiRequests += warm.requests + r.peak.requests
		}
	}
	// Latency at fixed offered rates (open loop): single-service read,
	// search and the aggregated reads.
	for _, rate := range cfg.rates {
		for i := range routes {
			r := &routes[i]
			if !(r.single || r.aggregate || r.search) {
				continue
			}
			if dir := os.Getenv("BENCH_PROFILE"); dir != "" && r.aggregate && rate == cfg.rates[0] && len(r.fixed) == 0 {
				m.profile(t, dir, shortClass(r.class), cfg.rateFor/2)
			}
			res := attack(t, r, vegeta.Rate{Freq: rate, Per: time.Second}, cfg.rateFor, 0)
			r.fixed = append(r.fixed, res)
			apiRequests += res.requests
		}
	}
	// Durable writes: paid orders through the api with 16 buyers.
	rep.orders = m.benchOrders(t, buyers, buyPub, cfg.ordersFor)
	apiRequests += rep.orders.requests
	loadTook := time.Since(loadStart)
	consulAfter := consulCount.snapshot()
	rep.consul = consulAfter.minus(consulBefore)
	rep.apiRequests = apiRequests
	rep.loadTook = loadTook
	rep.fsyncs = boltCommitsPerSecond(t, 2*time.Second)

	time.Sleep(3 * time.Second) // in-flight work (view flush, outbox relays) settles
	rep.rssAfter = m.rss(t)

	// A hung dependency: users stops answering (SIGSTOP); once its breaker
	// is open, how long does the api take to say 503?
	rep.breaker = m.benchBreaker(t, reader, rpcTimeout)
	rep.rpcTimeout = rpcTimeout
	rep.routes = routes

	out := rep.markdown()
	fmt.Println(out)
	if dir := os.Getenv("BENCH_OUT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := plotLatencies(filepath.Join(dir, "benchmarks-latency.png"), routes, cfg.rates); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("wrote %s and %s\n", filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "benchmarks-latency.png"))
	}
}

type benchConfig struct {
	products    int
	connections int
	peakFor     time.Duration
	rateFor     time.Duration
	ordersFor   time.Duration
	rates       []int
}

// benchConfigFromEnv reads the run's sizes: BENCH_DURATION (each closed-loop
// and fixed-rate run, default 8s) and BENCH_PRODUCTS (default 10000).
func benchConfigFromEnv(t *testing.T) benchConfig {
	c := benchConfig{products: 10_000, connections: 64, peakFor: 8 * time.Second, rates: []int{500, 1000}}
	if v := os.Getenv("BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 10*time.Minute {
			t.Fatalf("BENCH_DURATION=%q: want a duration between 0 and 10m", v)
		}
		c.peakFor = d
	}
	if v := os.Getenv("BENCH_PRODUCTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 1_000_000 {
			t.Fatalf("BENCH_PRODUCTS=%q: want a number between 100 and 1000000", v)
		}
		c.products = n
	}
	c.rateFor, c.ordersFor = c.peakFor, c.peakFor
	return c
}

// benchRoute is one route class and what was measured of it.
type benchRoute struct {
	class  string
	url    string
	header http.Header
	bare   bool    // the ceiling
	target float64 // peak throughput as a share of the ceiling, 0: none
	single bool    // the single-service read the aggregates compare with
	search bool
	// aggregate: a read composed from several services in parallel.
	aggregate bool

	peak  attackResult
	fixed []attackResult // one per offered rate
}

type attackResult struct {
	rate     int // offered req/s, 0: closed loop
	requests int64
	errors   int64         // answers other than 200, and transport errors
	codes    map[int]int64 // status codes of the errors (0: transport error, -1: 200 but partial)
	took     time.Duration
	lat      []time.Duration // sorted, successful and failed alike
}

func (a attackResult) perSecond() float64 {
	if a.took <= 0 {
		return 0
	}
	return float64(a.requests-a.errors) / a.took.Seconds()
}

func (a attackResult) q(p float64) time.Duration {
	if len(a.lat) == 0 {
		return 0
	}
	return a.lat[min(len(a.lat)-1, int(p*float64(len(a.lat))))]
}

// attack drives one route with vegeta: closed loop with conns workers when
// rate.Freq is 0, else open loop at that rate (vegeta starts a worker for
// every send that finds none free, so a slow answer does not delay the next
// send). Bounded by d; a request gets at most 10 s.
func attack(t *testing.T, r *benchRoute, rate vegeta.Rate, d time.Duration, conns int) attackResult {
	t.Helper()
	opts := []func(*vegeta.Attacker){vegeta.Timeout(10 * time.Second), vegeta.KeepAlive(true), vegeta.Redirects(vegeta.NoFollow)}
	if rate.Freq == 0 {
		opts = append(opts, vegeta.Workers(uint64(conns)), vegeta.MaxWorkers(uint64(conns)), vegeta.Connections(conns))
	} else {
		opts = append(opts, vegeta.Connections(256), vegeta.MaxWorkers(2048))
	}
	atk := vegeta.NewAttacker(opts...)
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: r.url, Header: r.header})
	res := attackResult{rate: rate.Freq, codes: map[int]int64{}}
	start := time.Now()
	var last time.Time
	for hit := range atk.Attack(tr, rate, d, r.class) {
		res.requests++
		res.lat = append(res.lat, hit.Latency)
		switch {
		case hit.Code != 200:
			res.errors++
			res.codes[int(hit.Code)]++
		case bytes.Contains(hit.Body, []byte(`"partial":true`)):
			// An aggregate that gave up on a part is an answer, not the
			// page that was asked for: it counts as an error here.
			res.errors++
			res.codes[-1]++
		}
		if end := hit.End(); end.After(last) {
			last = end
		}
	}
	res.took = last.Sub(start)
	slices.Sort(res.lat)
	mode := "closed loop, " + strconv.Itoa(conns) + " connections"
	if rate.Freq > 0 {
		mode = fmt.Sprintf("%d req/s offered", rate.Freq)
	}
	t.Logf("%-70s %-28s %8.0f req/s  p50 %-9v p99 %-9v errors %d %v", r.class, mode, res.perSecond(),
		res.q(0.5).Round(10*time.Microsecond), res.q(0.99).Round(10*time.Microsecond), res.errors, res.codes)
	return res
}

// startBare runs the ceiling, a bare net/http JSON handler, as a process of
// its own (this test binary again, see serveBareIfAsked) and returns its URL.
func startBare(t *testing.T) string {
	t.Helper()
	addr := meshtest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MARKETMESH_BENCH_BARE="+addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	meshtest.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return "http://" + addr
}

// serveBareIfAsked makes this binary the bare ceiling when started by
// startBare: GET /healthz answers {"status":"ok"} as JSON, nothing else.
func serveBareIfAsked() {
	addr := os.Getenv("MARKETMESH_BENCH_BARE")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// consulCounter is a reverse proxy in front of the Consul agent's HTTP API
// that counts every request passing through it, blocking queries included.
type consulCounter struct {
	addr  string
	mu    sync.Mutex
	count map[string]int64 // by method and path
}

type consulCounts map[string]int64

func (c consulCounts) total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

func (c consulCounts) minus(o consulCounts) consulCounts {
	out := consulCounts{}
	for k, v := range c {
		if d := v - o[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func startConsulCounter(t *testing.T, agent string) *consulCounter {
	t.Helper()
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: agent})
	p.FlushInterval = -1 // blocking queries and streams pass as they come
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &consulCounter{addr: ln.Addr().String(), count: map[string]int64{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.count[r.Method+" "+consulPathClass(r.URL.Path)]++
		c.mu.Unlock()
		p.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return c
}

func (c *consulCounter) snapshot() consulCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(consulCounts, len(c.count))
	for k, v := range c.count {
		out[k] = v
	}
	return out
}

// consulPathClass folds IDs out of a Consul API path, so the counts group
// by endpoint: /v1/health/service/marketmesh.users stays, a check ID goes.
func consulPathClass(p string) string {
	for _, prefix := range []string{"/v1/agent/check/pass/", "/v1/agent/check/update/", "/v1/agent/check/fail/", "/v1/agent/check/warn/",
		"/v1/session/renew/", "/v1/agent/service/deregister/", "/v1/agent/connect/ca/leaf/"} {
		if strings.HasPrefix(p, prefix) {
			return prefix + "…"
		}
	}
	return p
}

// profile takes CPU profiles of every process for d, starting a second
// from now (while the next attack runs), into dir/<route>-<process>.pprof.
// BENCH_PROFILE=dir turns it on: where the time goes, for whoever works on
// the figures.
func (m *mesh) profile(t *testing.T, dir, route string, d time.Duration) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	route = strings.NewReplacer("/", "_", "{", "", "}", "", "?", "_", "+", "_", "=", "_").Replace(strings.Trim(route, "/"))
	bases := map[string]string{"api": m.opsURL}
	for _, s := range services {
		b, err := opsBase(m, "marketmesh."+s)
		if err != nil {
			t.Fatal(err)
		}
		bases[s] = b
	}
	for name, base := range bases {
		go func() {
			time.Sleep(time.Second)
			c := &http.Client{Timeout: d + 10*time.Second}
			resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
			if err != nil {
				t.Logf("profile %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			path := filepath.Join(dir, route+"-"+name+".pprof")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err == nil {
				t.Logf("profile of %s under %s: %s", name, route, path)
			}
		}()
	}
}

// rss reads every process's resident set (VmRSS), Consul's included.
func (m *mesh) rss(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, name := range append(slices.Clone(services), "api") {
		p := m.procs[name]
		if name == "api" {
			p = m.api
		}
		p.mu.Lock()
		pid := 0
		if p.cmd != nil {
			pid = p.cmd.Process.Pid
		}
		p.mu.Unlock()
		out[name] = vmRSS(t, pid)
	}
	if c, err := findConsul(m.consul.Addr); err == nil {
		out["consul"] = vmRSS(t, c.pid)
	}
	return out
}

func vmRSS(t *testing.T, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("rss of %d: %q", pid, line)
			}
			return kb * 1024
		}
	}
	t.Fatalf("rss of %d: no VmRSS", pid)
	return 0
}

// benchWords make product names and descriptions: "phone" and "camera" are
// two of 100 words, so a search for both matches about 0.7% of products.
var benchWords = strings.Fields(`phone camera lamp chair table desk shelf sofa bed mirror clock radio speaker
headphones keyboard mouse monitor laptop tablet charger cable adapter battery router modem printer scanner
projector screen remote console controller watch band ring necklace bracelet wallet bag backpack jacket coat
shirt trousers shoes boots socks hat scarf gloves umbrella bottle mug plate bowl spoon fork knife pan pot
kettle toaster blender mixer oven fridge freezer washer dryer vacuum broom mop bucket drill saw hammer wrench
screwdriver ladder tent stove lantern compass map rope kayak paddle bicycle helmet pump lock bell basket
guitar piano violin drum flute book pen pencil notebook`)

var benchCategories = []string{"electronics/phones", "electronics/audio", "home/lighting", "home/kitchen", "garden/tools", "sports/outdoor", "fashion/shoes", "books/fiction"}

// seedCatalog creates n products through the api (8 at a time) and returns
// how many of them a search for "phone camera" matches.
func (m *mesh) seedCatalog(t *testing.T, token string, n int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := make([][]byte, n)
	hits := 0
	for i := range bodies {
		words := make([]string, 9)
		for j := range words {
			words[j] = benchWords[rng.IntN(len(benchWords))]
		}
		if slices.Contains(words, "phone") && slices.Contains(words, "camera") {
			hits++
		}
		bodies[i], _ = json.Marshal(map[string]any{
			"name":        fmt.Sprintf("%s %s %s %d", words[0], words[1], words[2], i),
			"description": strings.Join(words[3:], " "),
			"category":    benchCategories[rng.IntN(len(benchCategories))],
			"brand":       []string{"Acme", "Globex", "Initech", "Umbrella", "Hooli"}[rng.IntN(5)],
		})
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() != nil {
					return
				}
				// Setup, not measurement: a create that meets a 503 (a
				// timeout while the mesh warms up) is tried again for up
				// to 30 s.
				var resp *http.Response
				for deadline := time.Now().Add(30 * time.Second); ; {
					req, _ := http.NewRequest("POST", m.url+"/v1/products", bytes.NewReader(bodies[i]))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+token)
					r, err := client.Do(req)
					if err != nil {
						failed.CompareAndSwap(nil, err.Error())
						return
					}
					r.Body.Close()
					if r.StatusCode != 503 || time.Now().After(deadline) {
						resp = r
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if resp.StatusCode != 201 {
					failed.CompareAndSwap(nil, fmt.Sprintf("product %d: status %d", i, resp.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatalf("seeding the catalog: %v", f)
	}
	return hits
}

type ordersResult struct {
	requests int64
	paid     int64
	took     time.Duration
	p50, p99 time.Duration
	failures map[string]int64
}

// benchOrders places orders (one unit, tok_visa) with one goroutine per
// buyer for d and counts those answered 201 paid.
func (m *mesh) benchOrders(t *testing.T, buyers []string, pub string, d time.Duration) ordersResult {
	t.Helper()
	body, _ := json.Marshal(orderBody(pub, 1, "tok_visa"))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: len(buyers)}}
	var mu sync.Mutex
	res := ordersResult{failures: map[string]int64{}}
	var lat []time.Duration
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for _, token := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("POST", m.url+"/v1/orders", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				took := time.Since(t0)
				outcome := ""
				if err != nil {
					outcome = "transport error"
				} else {
					var o struct {
						Status string `json:"status"`
					}
					_ = json.NewDecoder(resp.Body).Decode(&o)
					resp.Body.Close()
					if resp.StatusCode != 201 || o.Status != "paid" {
						outcome = fmt.Sprintf("%d %s", resp.StatusCode, o.Status)
					}
				}
				mu.Lock()
				res.requests++
				lat = append(lat, took)
				if outcome == "" {
					res.paid++
				} else {
					res.failures[outcome]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50, res.p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	}
	t.Logf("checkout: %d paid of %d in %v (%v), p50 %v p99 %v", res.paid, res.requests, res.took.Round(time.Millisecond), res.failures, res.p50, res.p99)
	return res
}

type breakerResult struct {
	opened   time.Duration // from the hang to the first fast 503
	result   attackResult
	statuses map[int]int64
}

// benchBreaker hangs users (SIGSTOP: its sockets stay open, nothing
// answers), waits for the api's answers to turn into fast 503s, measures
// them at 200 req/s, then lets users go.
func (m *mesh) benchBreaker(t *testing.T, token string, rpcTimeout time.Duration) breakerResult {
	t.Helper()
	m.users.pause()
	defer m.users.resume()
	hung := time.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	var out breakerResult
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", m.url+"/v1/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("breaker: users hung: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == 503 && time.Since(t0) < rpcTimeout/10 {
			out.opened = time.Since(hung)
			break
		}
	}
	r := &benchRoute{class: "api GET /v1/users/me, users hung, breaker open", url: m.url + "/v1/users/me",
		header: http.Header{"Authorization": []string{"Bearer " + token}}}
	out.result = attack(t, r, vegeta.Rate{Freq: 200, Per: time.Second}, 5*time.Second, 0)
	out.statuses = out.result.codes
	return out
}

type benchReport struct {
	started     time.Time
	cfg         benchConfig
	seeded      string
	routes      []benchRoute
	orders      ordersResult
	fsyncs      float64
	consul      consulCounts
	apiRequests int64
	loadTook    time.Duration
	breaker     breakerResult
	rpcTimeout  time.Duration
	rssIdle     map[string]int64
	rssAfter    map[string]int64
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

func benchVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// markdown is the report: one table of figures and ratios, then the details.
func (r *benchReport) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	ceiling := r.routes[0].peak.perSecond()
	var single *benchRoute
	for i := range r.routes {
		if r.routes[i].single {
			single = &r.routes[i]
		}
	}
	w("# marketmesh benchmarks\n\n")
	w("Regenerated by `make bench` (e2e `TestBenchTable`); do not edit by hand.\n\n")
	w("- **Date:** %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	w("- **Machine:** %s; %d CPUs (GOMAXPROCS %d), %s RAM; %s; %s\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), kernel(), runtime.Version())
	w("- **Mesh:** real Consul dev agent (Connect CA), six services and the api as separate processes built without the race detector, mutual TLS between them, log level info, loopback only. Load from vegeta (a Go library) in the test process, on the same 2 cores.\n")
	w("- **Runs:** closed loop with %d connections for %v per route (after a second of warm-up); open loop at %v req/s for %v per route; checkout with 16 buyers for %v. One run: read the ratios, not the absolutes.\n",
		r.cfg.connections, r.cfg.peakFor, r.cfg.rates, r.cfg.rateFor, r.cfg.ordersFor)
	w("- **Setup:** %s.\n\n", r.seeded)

	w("## The table\n\n")
	w("| measure | figure | reference | ratio | target | |\n|---|---|---|---|---|---|\n")
	for _, rt := range r.routes {
		p := rt.peak
		fig := fmt.Sprintf("%.0f req/s (p50 %s, p99 %s%s)", p.perSecond(), ms(p.q(0.5)), ms(p.q(0.99)), errNote(p))
		if rt.bare {
			w("| peak: %s | %s | | 1.00 | | |\n", rt.class, fig)
			continue
		}
		ratio := p.perSecond() / ceiling
		tgt, v := "", ""
		if rt.target > 0 {
			tgt, v = fmt.Sprintf("≥ %.2f", rt.target), benchVerdict(ratio >= rt.target && p.errors == 0)
		}
		w("| peak: %s | %s | ceiling %.0f req/s | %.2f | %s | %s |\n", rt.class, fig, ceiling, ratio, tgt, v)
	}
	for ri, rate := range r.cfg.rates {
		sp99 := single.fixed[ri].q(0.99)
		w("| %d req/s: %s | p50 %s, p99 %s%s | | | | |\n", rate, single.class, ms(single.fixed[ri].q(0.5)), ms(sp99), errNote(single.fixed[ri]))
		for _, rt := range r.routes {
			if !(rt.aggregate || rt.search) {
				continue
			}
			f := rt.fixed[ri]
			ratio := float64(f.q(0.99)) / float64(sp99)
			limit := 3.0
			if rt.aggregate {
				limit = 1.3
				if rate >= 1000 {
					limit = 2
				}
			}
			w("| %d req/s: %s | p50 %s, p99 %s%s | single-service p99 %s | %.2f | ≤ %.1f | %s |\n",
				rate, rt.class, ms(f.q(0.5)), ms(f.q(0.99)), errNote(f), ms(sp99), ratio, limit, benchVerdict(ratio <= limit && f.errors == 0))
		}
	}
	perK := float64(r.consul.total()) * 1000 / float64(max(r.apiRequests, 1))
	w("| Consul HTTP requests per 1,000 api requests (all processes, watches included) | %d Consul requests during %d api requests (%v) | 1,000 api requests | %.3f | ≤ 1 | %s |\n",
		r.consul.total(), r.apiRequests, r.loadTook.Round(time.Second), perK, benchVerdict(perK <= 1))
	br := r.breaker.result
	bratio := float64(br.q(0.99)) / float64(r.rpcTimeout)
	w("| users hung, breaker open: api answers to GET /v1/users/me at 200 req/s | p50 %s, p99 %s, statuses %v | RPC timeout %v | %.4f | ≤ 0.01 | %s |\n",
		ms(br.q(0.5)), ms(br.q(0.99)), statusList(br, 503), r.rpcTimeout, bratio, benchVerdict(bratio <= 0.01 && allAre(br, 503)))
	ordersPerSec := float64(r.orders.paid) / r.orders.took.Seconds()
	w("| durable writes: paid orders through the api, 16 buyers | %.1f orders/s (p50 %s, p99 %s)%s | bbolt single-transaction fsync commits %.0f/s on this disk | %.3f | | |\n",
		ordersPerSec, ms(r.orders.p50), ms(r.orders.p99), failNote(r.orders.failures), r.fsyncs, ordersPerSec/r.fsyncs)
	names := append(slices.Clone(services), "api")
	worst := ""
	var worstRSS int64
	for _, n := range names {
		if r.rssIdle[n] > worstRSS {
			worst, worstRSS = n, r.rssIdle[n]
		}
	}
	w("| idle RSS, largest service (%s) | %.1f MiB | 40 MiB | %.2f | ≤ 1 | %s |\n\n", worst, mib(worstRSS), mib(worstRSS)/40, benchVerdict(mib(worstRSS) <= 40))

	w("## Memory (RSS)\n\n| process | idle after start | after the run |\n|---|---|---|\n")
	for _, n := range append(names, "consul") {
		if _, ok := r.rssIdle[n]; ok {
			w("| %s | %.1f MiB | %.1f MiB |\n", n, mib(r.rssIdle[n]), mib(r.rssAfter[n]))
		}
	}
	w("\n## Consul requests during the load, by endpoint\n\n| request | count |\n|---|---|\n")
	keys := make([]string, 0, len(r.consul))
	for k := range r.consul {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(r.consul[b] - r.consul[a]) })
	for _, k := range keys {
		w("| `%s` | %d |\n", k, r.consul[k])
	}
	w("\n## Latency at fixed offered rates\n\n![p50, p90, p99 and p99.9 per route class at each offered rate](benchmarks-latency.png)\n\n")
	w("| offered | route | p50 | p90 | p99 | p99.9 | max | answered req/s | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for ri, rate := range r.cfg.rates {
		for _, rt := range r.routes {
			if len(rt.fixed) <= ri {
				continue
			}
			f := rt.fixed[ri]
			w("| %d req/s | %s | %s | %s | %s | %s | %s | %.0f | %d |\n", rate, rt.class, ms(f.q(0.5)), ms(f.q(0.9)), ms(f.q(0.99)), ms(f.q(0.999)), ms(f.q(1)), f.perSecond(), f.errors)
		}
	}
	w("\nThe breaker opened %v after users was hung (the first answers wait out the RPC timeout and its retry).\n", r.breaker.opened.Round(time.Millisecond))
	return b.String()
}

func errNote(a attackResult) string {
	if a.errors == 0 {
		return ""
	}
	return fmt.Sprintf("; **%d errors** %v", a.errors, a.codes)
}

func failNote(f map[string]int64) string {
	if len(f) == 0 {
		return ""
	}
	return fmt.Sprintf("; **not paid:** %v", f)
}

// statusList says how many answers had status want, and what the others were.
func statusList(a attackResult, want int) string {
	out := fmt.Sprintf("%d × %d of %d", a.codes[want], want, a.requests)
	if a.codes[want] != a.requests {
		out += fmt.Sprintf(" (others %v)", a.codes)
	}
	return out
}

func allAre(a attackResult, code int) bool { return a.codes[code] == a.requests }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	raw, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func kernel() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(raw))
}
