package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestChaos runs a mixed load against the whole mesh while it kills,
// freezes and restarts its parts one after another, measures what clients
// saw of each fault, and then checks that nothing acknowledged was lost,
// that stock and money add up, and that every event reached every
// subscriber exactly once (chaos_events_test.go). It runs only with
// CHAOS=1 (make chaos), for CHAOS_DURATION (60 s by default) plus setup and
// checks.
func TestChaos(t *testing.T) {
	if os.Getenv("CHAOS") != "1" {
		t.Skip("chaos test: run with CHAOS=1 (make chaos)")
	}
	duration := chaosDuration(t)
	const (
		seed      = 20260101
		workers   = 8
		buyers    = 8
		pubsEach  = 5
		stock     = 200
		unitPrice = 1500
	)
	m := startMesh(t)

	// The Consul agent, found now so that the fault can restart it on the
	// same ports; whatever restart started is stopped (after the services,
	// so that they deregister cleanly) before meshtest removes its data.
	agent, consulErr := findConsul(m.consul.Addr)
	t.Cleanup(func() {
		if agent == nil || agent.cmd == nil {
			return
		}
		m.api.stop()
		for _, s := range slices.Backward(services) {
			m.procs[s].resume()
			m.procs[s].stop()
		}
		if err := agent.stop(); err != nil {
			t.Errorf("restarted consul: %v", err)
		}
		if t.Failed() {
			t.Logf("restarted consul log:\n%s", agent.log.String())
		}
	})

	// Seed: 2 sellers with 5 publications each, 8 buyers.
	type seller struct {
		token    string
		products []string
	}
	var sellers []seller
	var seededPubs []string
	pubInitial := map[string]int64{}
	for s := range 2 {
		_, tok := m.signup(fmt.Sprintf("chaos-seller-%d@example.com", s))
		m.must(201, "POST", "/v1/users/me/devices", tok, map[string]any{"token": fmt.Sprintf("tok-chaos-seller-%d", s), "platform": "android"})
		sl := seller{token: tok}
		for i := range pubsEach {
			title := fmt.Sprintf("Chaos widget %d-%d", s, i)
			p := m.must(201, "POST", "/v1/products", tok, map[string]any{"name": title, "description": "a sturdy gadget", "category": "misc/chaos", "brand": "Acme"})
			pub := m.must(201, "POST", "/v1/publications", tok, map[string]any{"product_id": p["id"], "title": title,
				"price": map[string]any{"amount": unitPrice, "currency": "USD"}, "quantity": stock, "condition": "new"})
			sl.products = append(sl.products, p["id"].(string))
			seededPubs = append(seededPubs, pub["id"].(string))
			pubInitial[pub["id"].(string)] = stock
		}
		sellers = append(sellers, sl)
	}
	buyerTokens := make([]string, buyers)
	for b := range buyers {
		_, buyerTokens[b] = m.signup(fmt.Sprintf("chaos-buyer-%d@example.com", b))
		if b%2 == 0 { // half the buyers get their receipts as pushes too
			m.must(201, "POST", "/v1/users/me/devices", buyerTokens[b], map[string]any{"token": fmt.Sprintf("tok-chaos-buyer-%d", b), "platform": "ios"})
		}
	}
	png := pngBytes(t, 32, 16)

	log := &chaosLog{keys: make([]map[string]bool, buyers)}
	for b := range buyers {
		log.keys[b] = map[string]bool{}
	}
	for _, sl := range sellers {
		log.products = append(log.products, sl.products...)
	}
	log.pubs = append(log.pubs, seededPubs...)
	pick := func(rng *rand.Rand, from func() []string) string {
		log.mu.Lock()
		defer log.mu.Unlock()
		ids := from()
		return ids[rng.IntN(len(ids))]
	}

	// The load.
	var stop atomic.Bool
	var abandoned, refused, retried atomic.Int64 // buys given up after retries, refused with a 4xx; retries
	var wg sync.WaitGroup
	worker := func(w int) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		buyer, sl := buyerTokens[w%buyers], sellers[w%len(sellers)]
		queries := []string{"chaos", "widget", "gadget", "sturdy+widget", "acme"}
		for n := 0; !stop.Load() && n < 100000; n++ {
			switch r := rng.IntN(100); {
			case r < 5: // a new user
				email := fmt.Sprintf("chaos-w%d-u%d@example.com", w, n)
				a := log.do("register", m.newRequest("POST", "/v1/auth/register", "", map[string]string{"email": email, "password": "correct horse", "name": "Chaos " + email}, nil))
				if a.status == 201 {
					log.mu.Lock()
					log.users = append(log.users, email)
					log.mu.Unlock()
					log.do("login", m.newRequest("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": "correct horse"}, nil))
				}
			case r < 20:
				log.do("me", m.newRequest("GET", "/v1/users/me", buyer, nil, nil))
			case r < 32:
				log.do("search", m.newRequest("GET", "/v1/products?q="+queries[rng.IntN(len(queries))], "", nil, nil))
			case r < 42:
				id := pick(rng, func() []string { return log.products })
				log.do("product", m.newRequest("GET", "/v1/products/"+id, "", nil, nil))
			case r < 54:
				id := pick(rng, func() []string { return log.pubs })
				log.do("publication", m.newRequest("GET", "/v1/publications/"+id, "", nil, nil))
			case r < 62: // a product and a publication of it
				// One in four is deleted right after (product.deleted:
				// publications closes the listing), so that both event
				// flows run under the faults.
				doomed := n%4 == 0
				title := fmt.Sprintf("Chaos gadget w%d n%d", w, n)
				a := log.do("create-product", m.newRequest("POST", "/v1/products", sl.token, map[string]any{"name": title, "category": "misc/chaos", "brand": "Acme"}, nil))
				if a.status != 201 {
					break
				}
				pid, _ := a.body["id"].(string)
				if !doomed {
					log.mu.Lock()
					log.products = append(log.products, pid)
					log.mu.Unlock()
				}
				a = log.do("create-publication", m.newRequest("POST", "/v1/publications", sl.token, map[string]any{"product_id": pid, "title": title,
					"price": map[string]any{"amount": 900 + rng.IntN(100), "currency": "USD"}, "quantity": 5, "condition": "new"}, nil))
				if a.status == 201 && !doomed {
					log.mu.Lock()
					log.pubs = append(log.pubs, fmt.Sprint(a.body["id"]))
					log.mu.Unlock()
				}
				if !doomed {
					break
				}
				for attempt := range 4 {
					a = log.do("delete-product", m.newRequest("DELETE", "/v1/products/"+pid, sl.token, nil, nil))
					if a.status == 204 || (attempt > 0 && a.status == 404) { // 404: an earlier attempt deleted it
						log.mu.Lock()
						log.deleted = append(log.deleted, pid)
						log.mu.Unlock()
						break
					}
					if a.status != 0 && a.status < 500 {
						break
					}
					time.Sleep(time.Duration(200<<attempt) * time.Millisecond)
				}
			case r < 67:
				a := log.do("upload", uploadReq(m, sl.token, sl.products[rng.IntN(len(sl.products))], png))
				if a.status == 201 {
					log.mu.Lock()
					log.images = append(log.images, fmt.Sprint(a.body["id"]))
					log.mu.Unlock()
				}
			case r < 77:
				log.do("cart", m.newRequest("POST", "/v1/cart/items", buyer, map[string]any{"publication_id": seededPubs[rng.IntN(len(seededPubs))], "quantity": 1 + rng.IntN(2)}, nil))
			default: // buy, retrying one Idempotency-Key as a good client does
				b := w % buyers
				pub := seededPubs[rng.IntN(len(seededPubs))]
				key := fmt.Sprintf("chaos-w%d-n%d", w, n)
				log.mu.Lock()
				log.keys[b][key] = true
				log.mu.Unlock()
				backoff, outcome := 200*time.Millisecond, &abandoned
				for attempt := 0; attempt < 6; attempt++ {
					if attempt > 0 {
						retried.Add(1)
					}
					a := log.do("order", m.newRequest("POST", "/v1/orders", buyer, orderBody(pub, 1, "tok_visa"), map[string]string{"Idempotency-Key": key}))
					if a.status == 201 || a.status == 202 {
						id, _ := a.body["id"].(string) // none: reported as lost
						log.mu.Lock()
						log.orders = append(log.orders, ackOrder{id: id, pub: pub, key: key, buyer: b, quantity: 1})
						log.mu.Unlock()
						outcome = nil
						break
					}
					if a.status != 0 && a.status < 500 && a.errCode() != "request_in_progress" {
						outcome = &refused // a final answer (out of stock, ...)
						break
					}
					time.Sleep(backoff)
					backoff = min(2*backoff, 2*time.Second)
				}
				if outcome != nil {
					outcome.Add(1)
				}
			}
			time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
		}
	}
	loadStart := time.Now()
	for w := range workers {
		wg.Add(1)
		go worker(w)
	}
	stopLoad := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopLoad() // a fault that fails the test still ends the load

	// The faults, one after another, spread over the duration.
	waitAll := func(timeout time.Duration) {
		t.Helper()
		for _, s := range services {
			m.consul.WaitPassing(t, "marketmesh."+s, 1, timeout)
		}
	}
	kill := func(svc string) func(*faultRun) {
		return func(f *faultRun) {
			p := m.procs[svc]
			p.kill()
			f.at = time.Now()
			time.Sleep(2 * time.Second)
			p.start()
			f.restarted = time.Now()
			m.consul.WaitPassing(t, "marketmesh."+svc, 1, 30*time.Second)
		}
	}
	faults := []struct {
		name   string
		routes []string
		run    func(*faultRun)
	}{
		{"kill -9 users", []string{"me"}, kill("users")},
		{"kill -9 products", []string{"search", "product"}, kill("products")},
		{"kill -9 publications", []string{"publication", "order"}, kill("publications")},
		{"kill -9 images", []string{"upload"}, kill("images")},
		{"kill -9 orders", []string{"order"}, kill("orders")},
		{"kill -9 notifications", nil, kill("notifications")},
		{"SIGSTOP publications 10s", []string{"publication", "order"}, func(f *faultRun) {
			p := m.procs["publications"]
			p.pause()
			f.at = time.Now()
			time.Sleep(10 * time.Second)
			p.resume()
			f.restarted = time.Now()
			m.consul.WaitPassing(t, "marketmesh.publications", 1, 30*time.Second)
		}},
		{"restart consul agent", nil, func(f *faultRun) {
			if agent == nil {
				f.skipped = fmt.Sprintf("cannot restart the agent: %v", consulErr)
				return
			}
			if err := agent.stop(); err != nil {
				t.Fatalf("stop consul: %v", err)
			}
			f.at = time.Now()
			if err := agent.start(); err != nil {
				t.Fatalf("restart consul: %v", err)
			}
			f.restarted = time.Now()
			if err := poll(30*time.Second, func() error {
				leader, err := m.consul.Client.Status().Leader()
				if err != nil || leader == "" {
					return fmt.Errorf("no leader yet (%v)", err)
				}
				return nil
			}); err != nil {
				t.Fatalf("restarted consul: %v\n%s", err, agent.log.String())
			}
			waitAll(30 * time.Second)
		}},
		{"restart whole mesh", nil, func(f *faultRun) {
			f.at = time.Now()
			m.api.stop()
			for _, s := range slices.Backward(services) {
				m.procs[s].stop()
			}
			for _, s := range services {
				m.procs[s].start()
			}
			m.api.start()
			f.restarted = time.Now()
			waitAll(30 * time.Second)
		}},
	}
	const warmup, tail = 2 * time.Second, 5 * time.Second
	slot := max(0, (duration-warmup-tail)/time.Duration(len(faults)))
	var runs []*faultRun
	for i, fd := range faults {
		if d := time.Until(loadStart.Add(warmup + time.Duration(i)*slot)); d > 0 {
			time.Sleep(d)
		}
		f := &faultRun{name: fd.name, routes: fd.routes}
		fd.run(f)
		runs = append(runs, f)
		if f.skipped != "" {
			report(t, "fault %q skipped: %s", f.name, f.skipped)
			continue
		}
		// The next fault waits until the load has seen this one's route
		// answer 2xx again (bounded), so that their effects do not overlap.
		f.until = time.Now().Add(time.Hour)
		_ = poll(20*time.Second, func() error {
			log.mu.Lock()
			defer log.mu.Unlock()
			if f.stats(log.obs).recovery < 0 {
				return fmt.Errorf("not recovered")
			}
			return nil
		})
		t.Logf("fault %q: injected at +%v, restarted at +%v", f.name, f.at.Sub(loadStart).Round(time.Millisecond), f.restarted.Sub(loadStart).Round(time.Millisecond))
	}
	// Load on for the rest of the duration, and at least tail after the last
	// restart so that its recovery shows.
	if d := max(time.Until(loadStart.Add(duration)), tail); d > 0 {
		time.Sleep(d)
	}
	stopLoad()
	loadEnd := time.Now()
	for i, f := range runs {
		f.until = loadEnd
		for _, g := range runs[i+1:] {
			if g.skipped == "" {
				f.until = g.at
				break
			}
		}
	}

	// The table.
	log.mu.Lock()
	all := slices.Clone(log.obs)
	log.mu.Unlock()
	if path := os.Getenv("CHAOS_DUMP"); path != "" {
		// Every answer, for a closer look: start and end (s since the load
		// began), route, status, error code, body of an unexpected 5xx.
		var d strings.Builder
		for _, o := range all {
			fmt.Fprintf(&d, "%.3f\t%.3f\t%s\t%d\t%s\t%s\n", o.start.Sub(loadStart).Seconds(), o.end.Sub(loadStart).Seconds(), o.route, o.status, o.code, o.body)
		}
		if err := os.WriteFile(path, []byte(d.String()), 0o644); err != nil {
			t.Errorf("CHAOS_DUMP: %v", err)
		}
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "load: %d workers, %d requests in %v (seed %d)\n", workers, len(all), loadEnd.Sub(loadStart).Round(time.Millisecond), seed)
	fmt.Fprintf(&tb, "%-26s %-20s %10s %9s %9s %6s %5s %5s %6s %9s\n", "fault", "routes", "1st fast503", "p99 503", "recovery", "2xx", "4xx", "503", "5xx*", "transport")
	var noRecovery []string
	for _, f := range runs {
		routes := "all"
		if f.routes != nil {
			routes = strings.Join(f.routes, ",")
		}
		if f.skipped != "" {
			fmt.Fprintf(&tb, "%-26s %-20s skipped: %s\n", f.name, routes, f.skipped)
			continue
		}
		s := f.stats(all)
		fmt.Fprintf(&tb, "%-26s %-20s %10s %9s %9s %6d %5d %5d %6d %9d\n", f.name, routes,
			fmtDur(s.firstFast503), fmtDur(s.p99of503), fmtDur(s.recovery), s.ok, s.c4xx, s.c503, s.c5xx, s.transport)
		if s.recovery < 0 {
			noRecovery = append(noRecovery, f.name)
		}
	}
	fmt.Fprintf(&tb, "(1st fast503: from the fault to the first 503 answered within %v on the routes; recovery: from the restart to the first 2xx of a request sent after it; 5xx*: 5xx other than 503)", fast503)
	report(t, "chaos table:\n%s", tb.String())
	if len(noRecovery) > 0 {
		t.Errorf("no 2xx on the affected routes after the restart of: %v", noRecovery)
	}

	// Other 5xx than 503: none.
	var bad []string
	for _, o := range all {
		if o.status >= 500 && o.status != 503 {
			bad = append(bad, fmt.Sprintf("+%v %s %d %s", o.start.Sub(loadStart).Round(time.Millisecond), o.route, o.status, strings.TrimSpace(o.body)))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d answers were 5xx other than 503, e.g.:\n%s", len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}

	// Settle: every service passing, the api ready, no order pending.
	waitAll(30 * time.Second)
	if err := poll(15*time.Second, func() error {
		resp, err := opsClient.Get(m.opsURL + "/readyz") // the api's ops listener
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	buyerOrders := make([][]map[string]any, buyers)
	if err := poll(60*time.Second, func() error {
		for b := range buyers {
			list, err := allOrders(m, buyerTokens[b])
			if err != nil {
				return err
			}
			for _, o := range list {
				if st, _ := o["status"].(string); st == "pending" {
					return fmt.Errorf("buyer %d: order %v is still pending", b, o["id"])
				}
			}
			buyerOrders[b] = list
		}
		return nil
	}); err != nil {
		t.Fatalf("orders did not settle: %v", err)
	}

	// Every acknowledged write is there.
	lost := 0
	lose := func(format string, args ...any) {
		t.Helper()
		lost++
		if lost <= 20 {
			t.Errorf("lost: "+format, args...)
		}
	}
	get := func(path, token string) answer {
		var a answer
		_ = poll(10*time.Second, func() error {
			if a = m.send("GET", path, token, nil, nil); a.status == 0 || a.status >= 500 {
				return fmt.Errorf("%s", a)
			}
			return nil
		})
		return a
	}
	for _, email := range log.users {
		var a answer
		_ = poll(10*time.Second, func() error {
			if a = m.send("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": "correct horse"}, nil); a.status == 0 || a.status >= 500 {
				return fmt.Errorf("%s", a)
			}
			return nil
		})
		if a.status != 200 {
			lose("user %s cannot log in: %s", email, a)
		}
	}
	for _, id := range log.products {
		if a := get("/v1/products/"+id, ""); a.status != 200 {
			lose("product %s: %s", id, a)
		}
	}
	for _, id := range log.deleted {
		if a := get("/v1/products/"+id, ""); a.status != 404 {
			lose("deleted product %s: %s, want 404", id, a)
		}
	}
	for _, id := range log.pubs {
		if a := get("/v1/publications/"+id, ""); a.status != 200 {
			lose("publication %s: %s", id, a)
		}
	}
	for _, id := range log.images {
		if a := get("/v1/images/"+id, ""); a.status != 200 {
			lose("image %s: status %d", id, a.status)
		}
	}
	acked := map[string]bool{}
	for _, o := range log.orders {
		if acked[o.id] {
			t.Errorf("order %s was acknowledged twice (key %s)", o.id, o.key)
		}
		acked[o.id] = true
		got := findOrder(buyerOrders[o.buyer], o.id)
		if got == nil {
			lose("order %s (buyer %d, key %s) is not listed", o.id, o.buyer, o.key)
			continue
		}
		if st, _ := got["status"].(string); !paidLike(st) {
			lose("acknowledged order %s (key %s) is %s", o.id, o.key, st)
		}
	}
	report(t, "acknowledged writes: %d users, %d products (and %d deleted), %d publications, %d images, %d paid orders", len(log.users), len(log.products), len(log.deleted), len(log.pubs), len(log.images), len(log.orders))
	report(t, "buys: %d acknowledged, %d given up after 6 attempts, %d refused with a 4xx, %d retries of a key", len(log.orders), abandoned.Load(), refused.Load(), retried.Load())
	report(t, "writes lost: %d", lost)
	if lost != 0 {
		t.Errorf("writes lost: %d, want 0", lost)
	}

	// Stock: initial = available + reserved + sold, nothing reserved, and
	// sold = what paid orders bought.
	sold := map[string]int64{}
	status := map[string]string{} // every order of every buyer
	paidByBuyer := make([]int, buyers)
	for b, list := range buyerOrders {
		for _, o := range list {
			id, _ := o["id"].(string)
			st, _ := o["status"].(string)
			status[id] = st
			if !paidLike(st) {
				continue
			}
			paidByBuyer[b]++
			for _, it := range lines(o) {
				pub, _ := it["publication_id"].(string)
				q, _ := it["quantity"].(float64)
				sold[pub] += int64(q)
			}
		}
	}
	for b := range buyers {
		if paidByBuyer[b] > len(log.keys[b]) {
			t.Errorf("buyer %d has %d paid orders from %d Idempotency-Keys: a key paid twice", b, paidByBuyer[b], len(log.keys[b]))
		}
	}
	if err := poll(30*time.Second, func() error {
		for _, id := range seededPubs {
			p, err := m.publication(id)
			if err != nil {
				return err
			}
			if r, _ := p["reserved"].(float64); r != 0 {
				return fmt.Errorf("publication %s: %v reserved", id, r)
			}
		}
		return nil
	}); err != nil {
		t.Errorf("reservations left held: %v", err)
	}
	var totalSold int64
	for _, id := range seededPubs {
		p, err := m.publication(id)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := p["quantity"].(float64)
		r, _ := p["reserved"].(float64)
		if int64(q)+int64(r)+sold[id] != pubInitial[id] || r != 0 {
			t.Errorf("publication %s: available %v + reserved %v + sold %d != initial %d", id, q, r, sold[id], pubInitial[id])
		}
		totalSold += sold[id]
	}
	report(t, "stock: %d units sold over %d seeded publications; orders: %v", totalSold, len(seededPubs), countByStatus(slices.Concat(buyerOrders...)))

	// Events: the relays catch up before the mesh stops (audited below,
	// from the files).
	settled := settleEvents(t, m)
	drained := drainNotifications(t, m)

	// Money: the sandbox ledger, read once orders is stopped: at most one
	// charge per order, kept exactly by the paid ones.
	m.procs["orders"].stop()
	charges, err := readLedger(filepath.Join(m.data, "orders", "orders.db"))
	if err != nil {
		t.Fatalf("sandbox ledger: %v", err)
	}
	kept := 0
	for id, cs := range charges {
		st, known := status[id]
		if !known {
			t.Errorf("a charge for an order no buyer has: %s %+v", id, cs)
			continue
		}
		if len(cs) > 1 {
			t.Errorf("order %s (%s) was charged %d times: %+v", id, st, len(cs), cs)
		}
	}
	for id, st := range status {
		cs := charges[id]
		k := 0
		for _, c := range cs {
			if c.Status == "succeeded" && !c.Refunded {
				k++
			}
		}
		kept += k
		switch {
		case paidLike(st) && k != 1:
			t.Errorf("paid order %s keeps %d charges: %+v", id, k, cs)
		case !paidLike(st) && k != 0:
			t.Errorf("%s order %s keeps a charge: %+v", st, id, cs)
		}
	}
	report(t, "ledger: %d orders charged, %d charges kept", len(charges), kept)

	// Events: every outbox event reached every subscriber of its topic
	// exactly once, read from the files of the stopped mesh (a process
	// holds its file locked while it runs).
	m.api.stop()
	for _, s := range slices.Backward(services) {
		m.procs[s].stop()
	}
	checkEvents(t, m, settled, log.deleted)
	checkNotifications(t, m, drained, 1)
}

// report logs a line of the chaos report and, when CHAOS_REPORT names a
// file, appends it there too (`make chaos` prints that file, so the table
// shows without -v and its Consul logs).
func report(t *testing.T, format string, a ...any) {
	t.Helper()
	t.Logf(format, a...)
	path := os.Getenv("CHAOS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("chaos report %s: %v", path, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", a...)
}
