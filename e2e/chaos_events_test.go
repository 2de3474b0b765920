package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
)

// The chaos test's event audit: once the load is over and the relays have
// caught up, the mesh is stopped and every service's bbolt file is read
// (read-only, through events.InspectFile) to check that every event in
// every producer's outbox reached every subscriber of its topic exactly
// once: acknowledged (the subscriber's cursor at the producer is at or past
// it), handled (its ID is in the subscriber's inbox), not dead-lettered, and
// that no inbox holds an ID no outbox has. Where the subscriber's effect can
// be read back from its file, it is checked too.

// eventSubscriptions is which service handles which topic, as the services
// declare it (consumer.On before consumer.Attach, which announces the
// topics in the registry as node metadata "subscribes"). The audit reads the
// registry and uses what it says; this map is the cross-check that the
// registry still says what the test was written for:
//   - publication.changed: services/products/main.go,
//     consumer.On(publicationsrpc.TopicPublicationChanged, handler.PublicationChanged)
//   - product.deleted: services/publications/main.go,
//     consumer.On(productsrpc.TopicProductDeleted, handler.ProductDeleted(db, relay))
//   - user.registered, order.paid, order.payment_failed, order.shipped,
//     order.cancelled: services/notifications (handler.Subscribe, delivery.Topics),
//     attached FromLatest.
var eventSubscriptions = map[string][]string{
	publicationsrpc.TopicPublicationChanged: {productsrpc.Service},
	productsrpc.TopicProductDeleted:         {publicationsrpc.Service},
	usersrpc.TopicUserRegistered:            {notificationsrpc.Service},
	ordersrpc.TopicOrderPaid:                {notificationsrpc.Service},
	ordersrpc.TopicOrderPaymentFailed:       {notificationsrpc.Service},
	ordersrpc.TopicOrderShipped:             {notificationsrpc.Service},
	ordersrpc.TopicOrderCancelled:           {notificationsrpc.Service},
}

// eventsSettle is what the audit learns while the mesh still runs.
type eventsSettle struct {
	subs     map[string][]string  // topic → subscribing services, from the registry
	since    map[string]time.Time // subscribers that want events from a time on (FromLatest)
	settled  time.Duration        // until every relay's backlog was 0 (-1: not within the bound)
	backlog  string               // the last backlogs seen, when they did not settle
	counters map[[3]string]float64
}

// settleEvents reads the subscriptions from the registry and waits (bounded)
// until every relay reports an empty backlog for every subscriber, so that
// the files read after the stop show the pipeline at rest. It also keeps
// the relays' delivery counters (since each producer's last start).
func settleEvents(t *testing.T, m *mesh) *eventsSettle {
	t.Helper()
	st := &eventsSettle{subs: map[string][]string{}, since: map[string]time.Time{}, settled: -1}
	for _, s := range services {
		name := "marketmesh." + s
		insts, _, err := m.consul.Client.Catalog().Service(name, "", nil)
		if err != nil {
			t.Errorf("events audit: registry %s: %v", name, err)
			continue
		}
		for _, in := range insts {
			for tp := range strings.SplitSeq(in.ServiceMeta[events.SubscribesKey], ",") {
				if tp = strings.TrimSpace(tp); tp != "" && !slices.Contains(st.subs[tp], name) {
					st.subs[tp] = append(st.subs[tp], name)
				}
			}
			if t, err := time.Parse(time.RFC3339Nano, in.ServiceMeta[events.SubscribesFromKey]); err == nil {
				st.since[name] = t
			}
		}
	}
	for tp := range st.subs {
		slices.Sort(st.subs[tp])
	}
	if !subsEqual(st.subs, eventSubscriptions) {
		t.Errorf("events audit: the registry's subscriptions %v differ from the ones the test was written for %v (eventSubscriptions): update the map and its comments", st.subs, eventSubscriptions)
	}
	var subscribers []string
	for _, ss := range st.subs {
		for _, s := range ss {
			if !slices.Contains(subscribers, s) {
				subscribers = append(subscribers, s)
			}
		}
	}

	start, calm := time.Now(), 0
	err := poll(60*time.Second, func() error {
		var behind []string
		counters := map[[3]string]float64{}
		for _, s := range services {
			name := "marketmesh." + s
			ms, err := scrapeRelay(m, name)
			if err != nil {
				calm = 0
				return err
			}
			if len(ms.backlog) == 0 {
				continue // no relay, or one with no subscriber in sight
			}
			for _, sub := range subscribers {
				if n, ok := ms.backlog[sub]; !ok {
					behind = append(behind, fmt.Sprintf("%s→%s: not discovered", name, sub))
				} else if n != 0 {
					behind = append(behind, fmt.Sprintf("%s→%s: %v", name, sub, n))
				}
			}
			for k, v := range ms.deliveries {
				counters[[3]string{name, k[0], k[1]}] = v
			}
		}
		st.counters = counters
		if len(behind) > 0 {
			calm = 0
			st.backlog = strings.Join(behind, ", ")
			return fmt.Errorf("backlogs: %s", st.backlog)
		}
		// Twice in a row, a poll apart: a backlog is measured once per relay round.
		if calm++; calm < 2 {
			time.Sleep(time.Second)
			return fmt.Errorf("once calm")
		}
		return nil
	})
	if err == nil {
		st.settled = time.Since(start)
	} else {
		t.Logf("events audit: relays did not settle within 60 s: %v", err)
	}
	return st
}

func subsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// relayMetrics is what a service's /metrics says of its relay.
type relayMetrics struct {
	backlog    map[string]float64    // subscriber → events after its cursor
	deliveries map[[2]string]float64 // (subscriber, result) → deliveries
}

// opsClient reads the services' ops endpoints; not the api's clients,
// whose exchanges are checked against the api's OpenAPI document.
var opsClient = &http.Client{Timeout: 5 * time.Second}

var checkOutputRE = regexp.MustCompile(`HTTP GET (https?://[^/\s]+)`)

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// opsGet GETs path on the ops port of the passing instance of name, found
// through its Consul HTTP check.
func opsGet(m *mesh, name, path string) (*http.Response, error) {
	base, err := opsBase(m, name)
	if err != nil {
		return nil, err
	}
	resp, err := opsClient.Get(base + path)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %s", name, path, resp.Status)
	}
	return resp, nil
}

// opsBase is the ops listener's base URL of the passing instance of name,
// found through its Consul health check.
func opsBase(m *mesh, name string) (string, error) {
	entries, _, err := m.consul.Client.Health().Service(name, "", true, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if len(entries) != 1 {
		return "", fmt.Errorf("%s: %d passing instances, want 1", name, len(entries))
	}
	var check string
	for _, c := range entries[0].Checks {
		if c.ServiceID != entries[0].Service.ID {
			continue
		}
		if c.Definition.HTTP != "" {
			check = c.Definition.HTTP
		} else if mm := checkOutputRE.FindStringSubmatch(c.Output); mm != nil {
			check = mm[1] // "HTTP GET http://host:port/path...: 200 OK Output: ..."
		}
	}
	u, err := url.Parse(check)
	if check == "" || err != nil {
		return "", fmt.Errorf("%s: no HTTP check URL to find its ops port (%q, %v)", name, check, err)
	}
	return u.Scheme + "://" + u.Host, nil
}

// scrapeRelay reads the relay metrics of the passing instance of name (the
// ops port serves /metrics too).
func scrapeRelay(m *mesh, name string) (relayMetrics, error) {
	out := relayMetrics{backlog: map[string]float64{}, deliveries: map[[2]string]float64{}}
	resp, err := opsGet(m, name, "/metrics")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		metric, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasPrefix(metric, "marketmesh_events_") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		l := map[string]string{}
		for _, kv := range labelRE.FindAllStringSubmatch(labels, -1) {
			l[kv[1]] = kv[2]
		}
		switch metric {
		case "marketmesh_events_outbox_backlog":
			out.backlog[l["subscriber"]] = v
		case "marketmesh_events_deliveries_total":
			out.deliveries[[2]string{l["subscriber"], l["result"]}] = v
		}
	}
	return out, sc.Err()
}

// flowRow is one (producer, topic, subscriber) line of the audit.
type flowRow struct {
	producer, topic, subscriber string
	events, acked, inbox, dead  int
	missing, unacked            []string // examples: "seq id"
}

// checkEvents audits the event pipeline from the files of the stopped mesh.
// deleted lists the products whose DELETE the api acknowledged.
func checkEvents(t *testing.T, m *mesh, st *eventsSettle, deleted []string) {
	t.Helper()
	var rep strings.Builder
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf("events audit: "+format, a...)
		fmt.Fprintf(&rep, "FAIL: "+format+"\n", a...)
	}

	snaps := map[string]events.Snapshot{}
	paths := map[string]string{}
	for _, s := range services {
		name := "marketmesh." + s
		paths[name] = filepath.Join(m.data, s, s+".db")
		snap, err := events.InspectFile(paths[name], 5*time.Second)
		if err != nil {
			fail("%s: %v", name, err)
			continue
		}
		if !snap.Buckets {
			continue // images: no events
		}
		snaps[name] = snap
		for _, u := range snap.Unreadable {
			fail("%s: unreadable entry: %s", name, u)
		}
	}
	names := slices.Sorted(maps.Keys(snaps))

	subs := st.subs
	if len(subs) == 0 {
		subs = eventSubscriptions // the registry could not be read
	}
	fmt.Fprintf(&rep, "subscriptions (registry metadata; declared in services/*/main.go):")
	for _, tp := range slices.Sorted(maps.Keys(subs)) {
		fmt.Fprintf(&rep, " %s → %s;", tp, strings.Join(subs[tp], ","))
	}
	rep.WriteString("\n")
	if st.settled >= 0 {
		fmt.Fprintf(&rep, "relays caught up %v after the checks (every backlog 0 twice in a row), then the mesh was stopped\n", st.settled.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&rep, "relays did NOT catch up within 60 s (%s); the mesh was stopped anyway\n", st.backlog)
	}

	// Every outbox event, by ID: an ID twice is one event appended twice.
	type where struct {
		producer, topic string
		seq             uint64
	}
	byID := map[string]where{}
	pruned := map[string]uint64{}
	fmt.Fprintf(&rep, "%-24s %7s %8s %7s  %s\n", "producer", "outbox", "last seq", "pruned", "cursors (subscriber=seq)")
	for _, p := range names {
		s := snaps[p]
		pruned[p] = s.Pruned()
		prev := s.FirstSeq - 1
		for _, e := range s.Outbox {
			if w, dup := byID[e.ID]; dup {
				fail("event %s is in the outbox twice: %s seq %d (%s) and %s seq %d (%s)", e.ID, w.producer, w.seq, w.topic, p, e.Seq, e.Topic)
			}
			byID[e.ID] = where{p, e.Topic, e.Seq}
			if e.Seq != prev+1 {
				fail("%s: outbox sequence jumps from %d to %d: events gone from the middle", p, prev, e.Seq)
			}
			prev = e.Seq
		}
		var cs []string
		for _, sub := range slices.Sorted(maps.Keys(s.Cursors)) {
			cs = append(cs, fmt.Sprintf("%s=%d", sub, s.Cursors[sub]))
		}
		if len(s.Outbox) == 0 && s.LastSeq == 0 && len(cs) == 0 {
			continue // a consumer only
		}
		fmt.Fprintf(&rep, "%-24s %7d %8d %7d  %s\n", p, len(s.Outbox), s.LastSeq, pruned[p], strings.Join(cs, " "))
	}

	// Per (producer, topic, subscriber): acknowledged, handled, dead letters.
	rows := map[[3]string]*flowRow{}
	row := func(p, tp, sub string) *flowRow {
		k := [3]string{p, tp, sub}
		if rows[k] == nil {
			rows[k] = &flowRow{producer: p, topic: tp, subscriber: sub}
		}
		return rows[k]
	}
	for _, p := range names {
		s := snaps[p]
		dead := map[string]map[uint64]bool{}
		for _, dl := range s.DeadLetters {
			if dead[dl.Subscriber] == nil {
				dead[dl.Subscriber] = map[uint64]bool{}
			}
			dead[dl.Subscriber][dl.Seq] = true
			fail("%s: dead letter for %s: seq %d %s (%s) after %d attempts: %s", p, dl.Subscriber, dl.Seq, dl.Event.ID, dl.Event.Topic, dl.Attempts, dl.LastError)
		}
		for _, e := range s.Outbox {
			if len(subs[e.Topic]) == 0 {
				row(p, e.Topic, "").events++
				continue
			}
			for _, sub := range subs[e.Topic] {
				r := row(p, e.Topic, sub)
				r.events++
				ex := fmt.Sprintf("%d %s", e.Seq, e.ID)
				if s.Acknowledged(sub, e.Seq) {
					r.acked++
				} else {
					r.unacked = append(r.unacked, ex)
				}
				_, handled := snaps[sub].Inbox[e.ID]
				switch {
				case dead[sub][e.Seq]:
					r.dead++
				case handled:
					r.inbox++
				case e.Event.Time.Before(st.since[sub]):
					// A subscriber attached FromLatest does not get what
					// happened before it first attached.
				default:
					r.missing = append(r.missing, ex)
				}
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(rows), func(a, b [3]string) int { return strings.Compare(a[0]+a[1]+a[2], b[0]+b[1]+b[2]) })
	fmt.Fprintf(&rep, "%-24s %-21s %-24s %7s %7s %7s %7s %5s\n", "producer", "topic", "subscriber", "events", "acked", "inbox", "missing", "dead")
	for _, k := range keys {
		r := rows[k]
		if r.subscriber == "" {
			fmt.Fprintf(&rep, "%-24s %-21s %-24s %7d %7s %7s %7s %5s\n", r.producer, r.topic, "(no subscriber)", r.events, "-", "-", "-", "-")
			continue
		}
		fmt.Fprintf(&rep, "%-24s %-21s %-24s %7d %7d %7d %7d %5d\n", r.producer, r.topic, r.subscriber, r.events, r.acked, r.inbox, len(r.missing), r.dead)
		if len(r.unacked) > 0 {
			fail("%s → %s (%s): %d events not acknowledged (cursor %d), e.g. %v", r.producer, r.subscriber, r.topic, len(r.unacked), snaps[r.producer].Cursors[r.subscriber], r.unacked[:min(5, len(r.unacked))])
		}
		if len(r.missing) > 0 {
			fail("%s → %s (%s): %d events not in the subscriber's inbox, e.g. %v", r.producer, r.subscriber, r.topic, len(r.missing), r.missing[:min(5, len(r.missing))])
		}
	}
	for _, tp := range slices.Sorted(maps.Keys(subs)) {
		found := false
		for _, k := range keys {
			found = found || k[1] == tp
		}
		if !found {
			fmt.Fprintf(&rep, "%-24s %-21s %-24s %7d   (no event of the topic in any outbox)\n", "-", tp, strings.Join(subs[tp], ","), 0)
		}
	}

	// Every inbox entry is an event of an outbox, of a topic its service takes.
	for _, sub := range names {
		s := snaps[sub]
		if len(s.Inbox) == 0 {
			continue
		}
		var topics []string
		for tp, ss := range subs {
			if slices.Contains(ss, sub) {
				topics = append(topics, tp)
			}
		}
		var phantom, foreign, unmatchedPruned []string
		for id := range s.Inbox {
			w, ok := byID[id]
			switch {
			case ok && slices.Contains(topics, w.topic):
			case ok:
				foreign = append(foreign, fmt.Sprintf("%s (%s from %s)", id, w.topic, w.producer))
			case anyPruned(pruned):
				unmatchedPruned = append(unmatchedPruned, id)
			default:
				phantom = append(phantom, id)
			}
		}
		fmt.Fprintf(&rep, "inbox of %s: %d event IDs, %d not in any outbox, %d of a topic it does not take", sub, len(s.Inbox), len(phantom), len(foreign))
		if len(unmatchedPruned) > 0 {
			fmt.Fprintf(&rep, ", %d not in any outbox but some outbox was pruned (not judged)", len(unmatchedPruned))
		}
		rep.WriteString("\n")
		if len(phantom) > 0 {
			slices.Sort(phantom)
			fail("inbox of %s: %d event IDs no outbox has (a phantom or duplicate event), e.g. %v", sub, len(phantom), phantom[:min(5, len(phantom))])
		}
		if len(foreign) > 0 {
			slices.Sort(foreign)
			fail("inbox of %s: %d events of topics it does not subscribe to, e.g. %v", sub, len(foreign), foreign[:min(5, len(foreign))])
		}
	}

	// Deliveries the relays counted since their producer's last start (the
	// whole-mesh restart): duplicates are redeliveries the inbox absorbed.
	if len(st.counters) > 0 {
		type pair struct{ producer, subscriber string }
		per := map[pair]map[string]float64{}
		for k, v := range st.counters {
			pk := pair{k[0], k[1]}
			if per[pk] == nil {
				per[pk] = map[string]float64{}
			}
			per[pk][k[2]] = v
		}
		pairs := slices.SortedFunc(maps.Keys(per), func(a, b pair) int {
			return strings.Compare(a.producer+" "+a.subscriber, b.producer+" "+b.subscriber)
		})
		rep.WriteString("relay deliveries since each producer's last start (metrics):")
		for _, pk := range pairs {
			c := per[pk]
			fmt.Fprintf(&rep, " %s→%s ok %.0f, duplicate %.0f, refused %.0f, unavailable %.0f;", strings.TrimPrefix(pk.producer, "marketmesh."),
				strings.TrimPrefix(pk.subscriber, "marketmesh."), c["ok"], c["duplicate"], c["refused"], c["unavailable"])
		}
		rep.WriteString("\n")
	}

	// The subscribers' effects, read back from their files.
	checkPriceEffects(snaps, paths, &rep, fail)
	checkDeleteEffects(snaps, paths, deleted, &rep, fail)

	report(t, "events audit (every outbox event reached every subscriber exactly once):\n%s", strings.TrimRight(rep.String(), "\n"))
}

func anyPruned(pruned map[string]uint64) bool {
	for _, n := range pruned {
		if n > 0 {
			return true
		}
	}
	return false
}

// readBolt runs fn on the file at path opened read-only.
func readBolt(path string, fn func(tx *bolt.Tx) error) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(fn)
}

// checkPriceEffects: products handles publication.changed by keeping each
// publication's price and whether it is on sale (bucket
// publication_prices, product id 0x00 publication id → {event_id, amount,
// currency, active}), newest event first. The effect is not countable (a
// redelivery rewrites the same state), so the check is that for every
// publication of a product that still exists, products holds the state of
// the publication's last event in publications' outbox.
func checkPriceEffects(snaps map[string]events.Snapshot, paths map[string]string, rep *strings.Builder, fail func(string, ...any)) {
	pubs, ok := snaps[publicationsrpc.Service]
	if !ok {
		return
	}
	last := map[string]events.OutboxEntry{} // publication → its last event
	for _, e := range pubs.Outbox {
		if e.Topic != publicationsrpc.TopicPublicationChanged {
			continue
		}
		var pc publicationsrpc.PublicationChanged
		if err := e.Decode(&pc); err != nil {
			fail("publications outbox %d: %v", e.Seq, err)
			continue
		}
		last[pc.PublicationID] = e
	}
	type pubPrice struct {
		EventID  string `json:"event_id"`
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
		Active   bool   `json:"active"`
	}
	var same, olderID, gone int
	var wrong []string
	err := readBolt(paths[productsrpc.Service], func(tx *bolt.Tx) error {
		products, prices := tx.Bucket([]byte("products")), tx.Bucket([]byte("publication_prices"))
		if products == nil || prices == nil {
			return fmt.Errorf("no products or publication_prices bucket")
		}
		for id, e := range last {
			var pc publicationsrpc.PublicationChanged
			_ = e.Decode(&pc)
			if products.Get([]byte(pc.ProductID)) == nil {
				gone++ // deleted: its prices went with it
				continue
			}
			want := pubPrice{EventID: e.ID, Amount: pc.Price.Amount, Currency: pc.Price.Currency,
				Active: pc.Status == publicationsrpc.StatusActive && pc.Quantity > 0}
			raw := prices.Get([]byte(pc.ProductID + "\x00" + id))
			var got pubPrice
			if raw == nil || json.Unmarshal(raw, &got) != nil {
				wrong = append(wrong, fmt.Sprintf("%s: nothing applied (last event %s)", id, e.ID))
				continue
			}
			switch {
			case got.Amount != want.Amount || got.Currency != want.Currency || got.Active != want.Active:
				wrong = append(wrong, fmt.Sprintf("%s: products holds %+v, the last event %s says %+v", id, got, e.ID, want))
			case got.EventID != want.EventID:
				olderID++
			default:
				same++
			}
		}
		return nil
	})
	if err != nil {
		fail("products file: %v", err)
		return
	}
	fmt.Fprintf(rep, "effect publication.changed → products: %d publications hold their last event's state (%d of them under an older event's ID), %d of deleted products, %d wrong\n",
		same+olderID, olderID, gone, len(wrong))
	if len(wrong) > 0 {
		sort.Strings(wrong)
		fail("products does not hold the last state of %d publications, e.g.:\n%s", len(wrong), strings.Join(wrong[:min(5, len(wrong))], "\n"))
	}
}

// checkDeleteEffects: publications handles product.deleted by recording the
// product as deleted and closing its publications, each with one
// publication.changed (status closed) in its outbox. Checked: every
// acknowledged DELETE has its event; every deleted product is recorded;
// every publication of it is closed, and closed once (one closed event).
func checkDeleteEffects(snaps map[string]events.Snapshot, paths map[string]string, deleted []string, rep *strings.Builder, fail func(string, ...any)) {
	prods, ok1 := snaps[productsrpc.Service]
	pubs, ok2 := snaps[publicationsrpc.Service]
	if !ok1 || !ok2 {
		return
	}
	deletedEvents := map[string]string{} // product → event ID
	for _, e := range prods.Outbox {
		if e.Topic != productsrpc.TopicProductDeleted {
			continue
		}
		var pd productsrpc.ProductDeleted
		if err := e.Decode(&pd); err != nil {
			fail("products outbox %d: %v", e.Seq, err)
			continue
		}
		deletedEvents[pd.ProductID] = e.ID
	}
	if prods.Pruned() == 0 {
		for _, id := range deleted {
			if _, ok := deletedEvents[id]; !ok {
				fail("the api acknowledged DELETE of product %s, and products' outbox has no product.deleted for it", id)
			}
		}
	}
	closedEvents := map[string]int{} // publication → closed events
	for _, e := range pubs.Outbox {
		var pc publicationsrpc.PublicationChanged
		if e.Topic == publicationsrpc.TopicPublicationChanged && e.Decode(&pc) == nil && pc.Status == publicationsrpc.StatusClosed {
			closedEvents[pc.PublicationID]++
		}
	}
	var closed int
	var bad []string
	err := readBolt(paths[publicationsrpc.Service], func(tx *bolt.Tx) error {
		marks, all := tx.Bucket([]byte("deleted_products")), tx.Bucket([]byte("publications"))
		if marks == nil || all == nil {
			return fmt.Errorf("no deleted_products or publications bucket")
		}
		for pid := range deletedEvents {
			if marks.Get([]byte(pid)) == nil {
				bad = append(bad, fmt.Sprintf("product %s: not recorded as deleted", pid))
			}
		}
		return all.ForEach(func(k, v []byte) error {
			var p struct {
				ProductID string `json:"product_id"`
				Status    string `json:"status"`
			}
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("publication %s: %w", k, err)
			}
			if _, ok := deletedEvents[p.ProductID]; !ok {
				return nil
			}
			closed++
			switch n := closedEvents[string(k)]; {
			case p.Status != publicationsrpc.StatusClosed:
				bad = append(bad, fmt.Sprintf("publication %s of deleted product %s is %s", k, p.ProductID, p.Status))
			case n != 1 && pubs.Pruned() == 0:
				bad = append(bad, fmt.Sprintf("publication %s of deleted product %s was closed %d times (closed events)", k, p.ProductID, n))
			}
			return nil
		})
	})
	if err != nil {
		fail("publications file: %v", err)
		return
	}
	fmt.Fprintf(rep, "effect product.deleted → publications: %d products deleted (%d DELETEs acknowledged), %d publications of them closed, %d problems\n",
		len(deletedEvents), len(deleted), closed, len(bad))
	if len(bad) > 0 {
		sort.Strings(bad)
		fail("product.deleted effects: %d problems, e.g.:\n%s", len(bad), strings.Join(bad[:min(5, len(bad))], "\n"))
	}
}
