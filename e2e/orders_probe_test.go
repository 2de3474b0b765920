package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
)

// A hostile client against every buying route: a bounded, deterministic set
// of malformed, oversize, ill-typed and ill-authenticated requests, sent
// over raw TCP so that nothing in a client library tidies them up. Every
// answer must be a well-formed non-5xx; afterwards the stock must still add
// up, nothing may stay pending, and a normal order must still go through.

const (
	probeSeed        = 20240611
	probeMaxRequests = 1500
	probeBudget      = 90 * time.Second
	probeTimeout     = 15 * time.Second
	probeWorkers     = 4
	probeMaxMessage  = 1024 // bytes of error.message: an error must not echo its input back
	probeStock       = 500
	hookRouteName    = "POST /v1/payments/webhook"
)

// probe is one hostile request.
type probe struct {
	route   string // the route it aims at, for grouping ("POST /v1/orders")
	what    string // what it probes
	method  string
	target  string      // the raw request-target, sent as is
	hdr     [][2]string // raw header lines in order; names may repeat
	body    []byte
	hasBody bool
	chunked bool  // send the body with Transfer-Encoding: chunked
	want    []int // when set, the status must be one of these
}

func (p *probe) header(k, v string) *probe { p.hdr = append(p.hdr, [2]string{k, v}); return p }

// json sets a body declared application/json.
func (p *probe) json(b []byte) *probe {
	return p.header("Content-Type", "application/json").raw(b)
}

// raw sets a body without touching the headers.
func (p *probe) raw(b []byte) *probe { p.body, p.hasBody = b, true; return p }

func (p *probe) expect(st ...int) *probe { p.want = st; return p }

// probeAnswer is what came back.
type probeAnswer struct {
	status int
	hdr    http.Header
	raw    []byte
	err    error
	took   time.Duration
}

// sendProbe writes p on a fresh connection and reads one answer, within probeTimeout.
func sendProbe(addr string, p *probe) probeAnswer {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return probeAnswer{err: err, took: time.Since(start)}
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(probeTimeout))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", p.method, p.target, addr)
	for _, h := range p.hdr {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	body := p.body
	switch {
	case p.hasBody && p.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
		var cb bytes.Buffer
		for rest := p.body; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(&cb, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		cb.WriteString("0\r\n\r\n")
		body = cb.Bytes()
	case p.hasBody:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(p.body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	// Write while reading: the server may answer (413) before it has read
	// a large body, and stop reading it.
	go func() {
		if _, err := conn.Write(b.Bytes()); err == nil && len(body) > 0 {
			_, _ = conn.Write(body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: p.method})
	if err != nil {
		return probeAnswer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	a := probeAnswer{status: resp.StatusCode, hdr: resp.Header, raw: raw, took: time.Since(start)}
	if err != nil {
		a.err = fmt.Errorf("reading the body: %w", err)
	}
	return a
}

// clipStr shortens s for a report.
func clipStr(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q…(%d bytes)", s[:n], len(s))
}

func (p *probe) summary() string {
	var hs []string
	for _, h := range p.hdr {
		v := h[1]
		if h[0] == "Authorization" && strings.HasPrefix(v, "Bearer ") && len(v) > 40 {
			v = v[:20] + "…" + v[len(v)-8:]
		}
		hs = append(hs, h[0]+"="+clipStr(v, 40))
	}
	body := "no body"
	if p.hasBody {
		body = "body " + clipStr(string(p.body), 80)
	}
	return fmt.Sprintf("[%s] %s %s headers{%s} %s", p.what, p.method, clipStr(p.target, 120), strings.Join(hs, ", "), body)
}

func (a probeAnswer) summary() string {
	if a.status == 0 {
		return fmt.Sprintf("no answer after %v: %v", a.took.Round(time.Millisecond), a.err)
	}
	b := a.raw
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d (Content-Type %q, X-Request-Id %q, %d body bytes, %v): %s", a.status, a.hdr.Get("Content-Type"),
		a.hdr.Get("X-Request-Id"), len(a.raw), a.took.Round(time.Millisecond), b)
}

// checkProbe returns the rules the answer breaks.
func checkProbe(p *probe, a probeAnswer) []string {
	if a.status == 0 {
		return []string{"no answer (hang, reset or timeout)"}
	}
	var bad []string
	if a.err != nil {
		bad = append(bad, "answer body cut short")
	}
	if a.status >= 500 {
		bad = append(bad, "5xx")
	}
	if len(p.want) > 0 && !slices.Contains(p.want, a.status) {
		bad = append(bad, fmt.Sprintf("status not in %v", p.want))
	}
	rid := a.hdr.Get("X-Request-Id")
	if rid == "" {
		bad = append(bad, "no X-Request-Id")
	} else if len(rid) > 128 {
		bad = append(bad, "X-Request-Id longer than 128 bytes echoed")
	}
	if a.status >= 400 && a.status < 500 {
		if ct := a.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			bad = append(bad, "4xx without Content-Type application/json")
		}
		var doc struct {
			Error *struct {
				Code      string `json:"code"`
				Message   string `json:"message"`
				RequestID string `json:"request_id"`
			} `json:"error"`
		}
		switch err := json.Unmarshal(a.raw, &doc); {
		case err != nil || doc.Error == nil:
			bad = append(bad, "4xx body not the error shape")
		case doc.Error.Code == "" || doc.Error.Message == "" || doc.Error.RequestID == "":
			bad = append(bad, "4xx error shape incomplete")
		default:
			if len(doc.Error.Message) > probeMaxMessage {
				bad = append(bad, fmt.Sprintf("error message longer than %d bytes", probeMaxMessage))
			}
			if rid != "" && doc.Error.RequestID != rid {
				bad = append(bad, "error.request_id differs from X-Request-Id")
			}
		}
	}
	return bad
}

// jsonStr is s as a JSON string literal.
func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// withHole marshals template after putting a placeholder at path (keys
// and indexes), and replaces it with the raw JSON fragment val (which may
// be invalid JSON on purpose).
func withHole(template func() any, path []any, val string) []byte {
	root := template()
	const hole = "\u0001HOLE\u0001"
	var cur any = root
	for i, step := range path {
		last := i == len(path)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[step.(string)] = hole
			} else {
				cur = c[step.(string)]
			}
		case []any:
			if last {
				c[step.(int)] = hole
			} else {
				cur = c[step.(int)]
			}
		}
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err)
	}
	return bytes.Replace(b, []byte(jsonStr(hole)), []byte(val), 1)
}

// addMember inserts `"key":val` into the JSON object obj, first or last.
func addMember(obj []byte, key, val string, first bool) []byte {
	m := jsonStr(key) + ":" + val
	if first {
		return []byte("{" + m + "," + string(obj[1:]))
	}
	return []byte(string(obj[:len(obj)-1]) + "," + m + "}")
}

func pathName(path []any) string {
	var b strings.Builder
	for i, s := range path {
		switch v := s.(type) {
		case string:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		}
	}
	return b.String()
}

func TestBuyingRoutesSurviveHostileInput(t *testing.T) {
	m := startMesh(t)
	addr := strings.TrimPrefix(m.url, "http://")
	sellerID, sToken := m.signup("probe-seller@example.com")
	buyerID, bToken := m.signup("probe-buyer@example.com")
	_, xToken := m.signup("probe-stranger@example.com")
	pub := m.seedPublication(sToken, "Probe widget", 1000, "USD", probeStock)
	secret := m.webhookSecret(t)

	stock := func() (q, r int64) {
		t.Helper()
		p, err := m.publication(pub)
		if err != nil {
			t.Fatal(err)
		}
		qf, _ := p["quantity"].(float64)
		rf, _ := p["reserved"].(float64)
		return int64(qf), int64(rf)
	}
	q0, r0 := stock()
	if q0 != probeStock || r0 != 0 {
		t.Fatalf("fresh publication: quantity %d reserved %d", q0, r0)
	}

	// Two real orders of the buyer: their IDs are what a stranger must not
	// reach, and what the path probes mangle.
	var orderIDs []string
	for i := range 2 {
		a := m.placeOrder(bToken, orderBody(pub, 1, "tok_visa"), fmt.Sprintf("probe-setup-%d", i))
		o := expectAnswer(t, "setup order", a, 201)
		orderIDs = append(orderIDs, o["id"].(string))
	}
	ordA, ordB := orderIDs[0], orderIDs[1]

	rng := rand.New(rand.NewPCG(probeSeed, probeSeed>>1))
	var fixed, fuzz []*probe // fixed: always sent; fuzz: sampled to fit the budget
	newP := func(list *[]*probe, route, what, method, target, token string) *probe {
		p := &probe{route: route, what: what, method: method, target: target}
		if token != "" {
			p.header("Authorization", "Bearer "+token)
		}
		*list = append(*list, p)
		return p
	}

	// Valid bodies, as templates.
	orderTpl := func() any {
		return map[string]any{
			"items":            []any{map[string]any{"publication_id": pub, "quantity": 1}},
			"payment":          map[string]any{"method": "card", "card_token": "tok_visa"},
			"shipping_address": address(),
		}
	}
	checkoutTpl := func() any {
		return map[string]any{
			"payment":          map[string]any{"method": "card", "card_token": "tok_visa"},
			"shipping_address": address(),
		}
	}
	cartTpl := func() any { return map[string]any{"publication_id": pub, "quantity": 1} }
	evCount := 0
	eventTpl := func() any {
		evCount++
		return map[string]any{
			"id": fmt.Sprintf("evt_probe_%d", evCount), "type": "payment.succeeded", "created": time.Now().Unix(),
			"data": map[string]any{"charge_id": "ch_probe", "order_id": ordA,
				"amount": map[string]any{"amount": 1000, "currency": "USD"}},
		}
	}
	mustJSON := func(v any) []byte { b, _ := json.Marshal(v); return b }
	addrPaths := func(prefix ...any) [][]any {
		out := [][]any{append(slices.Clone(prefix), "shipping_address")}
		for _, k := range []string{"name", "line1", "city", "postal_code", "country"} {
			out = append(out, append(slices.Clone(prefix), "shipping_address", k))
		}
		return out
	}
	payPaths := [][]any{{"payment"}, {"payment", "method"}, {"payment", "card_token"}}
	bodyRoutes := []struct {
		route, target string
		tpl           func() any
		paths         [][]any
		idem          bool
	}{
		{"POST /v1/cart/items", "/v1/cart/items", cartTpl, [][]any{{"publication_id"}, {"quantity"}}, false},
		{"POST /v1/cart/checkout", "/v1/cart/checkout", checkoutTpl, append(slices.Clone(payPaths), addrPaths()...), true},
		{"POST /v1/orders", "/v1/orders", orderTpl, append(append([][]any{{"items"}, {"items", 0}, {"items", 0, "publication_id"},
			{"items", 0, "quantity"}}, payPaths...), addrPaths()...), true},
	}

	// Hostile JSON values for any field.
	bigDigits := strings.Repeat("9", 5000)
	hostileVals := []string{
		`null`, `true`, `"str"`, `""`, `"   "`, `0`, `-1`, `1.5`, `-0`, `1e308`, `-1e308`, `1e400`,
		`9223372036854775808`, `-9223372036854775809`, `18446744073709551616`, bigDigits, `[]`, `{}`, `[1,2]`, `{"a":1}`,
		jsonStr("a\x00b"), jsonStr("\x01\x02\x1b[31m\x7f"), "\"\xff\xfe\xfd\"", jsonStr("\u202egnp.exe"), `"\ud800"`,
		jsonStr(strings.Repeat("x", 50<<10)), jsonStr("' OR '1'='1' --"), jsonStr("/items/0/quantity"), jsonStr("../../etc/passwd"),
		jsonStr("ünïcødé 🛒"), `{"$gt":""}`,
	}

	// 1. Bodies on the JSON write routes.
	deepObj := strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)
	deepArr := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	deeper := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	twoMiB := 2 << 20
	garbage := make([]byte, twoMiB)
	for i := range garbage {
		garbage[i] = byte(rng.IntN(256))
	}
	utf16Body := func(b []byte) []byte {
		var out []byte
		for _, u := range utf16.Encode([]rune(string(b))) {
			out = append(out, byte(u), byte(u>>8))
		}
		return out
	}
	for _, br := range bodyRoutes {
		valid := mustJSON(br.tpl())
		generic := []struct {
			what string
			body []byte
			want []int
		}{
			{"empty body", []byte{}, []int{400}},
			{"null", []byte("null"), nil},
			{"an array", []byte("[]"), []int{400}},
			{"an array of the object", []byte("[" + string(valid) + "]"), []int{400}},
			{"a string", []byte(`"x"`), []int{400}},
			{"a number", []byte(`42`), []int{400}},
			{"true", []byte(`true`), []int{400}},
			{"an empty object", []byte(`{}`), nil},
			{"unterminated", valid[:len(valid)-1], []int{400}},
			{"object nested 10001 deep", []byte(deepObj), []int{400}},
			{"array nested 10001 deep", []byte(deepArr), []int{400}},
			{"array nested 100000 deep", []byte(deeper), []int{400}},
			{"2 MiB string field", []byte(`{"publication_id":"` + strings.Repeat("x", twoMiB) + `"}`), []int{413}},
			{"2 MiB of random bytes", garbage, []int{400, 413}},
			{"2 MiB of spaces before the object", append(bytes.Repeat([]byte(" "), twoMiB), valid...), []int{413}},
			{"trailing garbage", append(slices.Clone(valid), " xyz"...), []int{400}},
			{"a second object", append(slices.Clone(valid), "{}"...), []int{400}},
			{"a trailing ]", append(slices.Clone(valid), "]"...), []int{400}},
			{"a trailing NUL", append(slices.Clone(valid), 0), []int{400}},
			{"a UTF-8 BOM", append([]byte("\xef\xbb\xbf"), valid...), []int{400}},
			{"invalid UTF-8 outside strings", append([]byte("{\xff"), valid[1:]...), []int{400}},
			{"an unknown field", addMember(valid, "coupon", `"FREE"`, false), []int{400}},
			{"an unknown field with a 50 KB name", addMember(valid, strings.Repeat("k", 50<<10), `1`, false), []int{400}},
			{"an unknown field with a NUL in its name", addMember(valid, "a\x00b", `1`, false), []int{400}},
			{"a key of 50 KB of invalid UTF-8", []byte("{\"" + strings.Repeat("\xff", 50<<10) + "\":1}"), []int{400}},
		}
		for _, g := range generic {
			p := newP(&fixed, br.route, g.what, "POST", br.target, bToken).json(g.body)
			p.want = g.want
		}
		// Content types with a valid body.
		for _, ct := range []struct {
			ct   string
			want []int
		}{
			{"", []int{415}}, {"text/plain", []int{415}}, {"application/x-www-form-urlencoded", []int{415}},
			{"application/json; charset=utf-16", nil}, {"application/json;;;", nil}, {"application/json; =", []int{415}},
			{"APPLICATION/JSON", nil}, {"application/jsonx", []int{415}}, {"multipart/form-data; boundary=x", []int{415}},
		} {
			p := newP(&fixed, br.route, "Content-Type "+strconv.Quote(ct.ct), "POST", br.target, bToken)
			if ct.ct != "" {
				p.header("Content-Type", ct.ct)
			}
			p.raw(valid).want = ct.want
		}
		newP(&fixed, br.route, "a UTF-16 body declared utf-16", "POST", br.target, bToken).
			header("Content-Type", "application/json; charset=utf-16").raw(utf16Body(valid)).expect(400, 415)
		newP(&fixed, br.route, "two Content-Type headers", "POST", br.target, bToken).
			header("Content-Type", "text/plain").header("Content-Type", "application/json").raw(valid)
		// Every field, every hostile value: sampled later.
		for _, path := range br.paths {
			for _, v := range hostileVals {
				body := withHole(br.tpl, path, v)
				newP(&fuzz, br.route, pathName(path)+" = "+clipStr(v, 30), "POST", br.target, bToken).
					header("Idempotency-Key", fmt.Sprintf("probe-fz-%d", len(fuzz))).json(body)
				// Duplicate keys: the hostile value first, then last.
				if len(path) == 1 {
					newP(&fuzz, br.route, "duplicate "+pathName(path)+", hostile last", "POST", br.target, bToken).
						json(addMember(mustJSON(br.tpl()), path[0].(string), v, false))
					newP(&fuzz, br.route, "duplicate "+pathName(path)+", hostile first", "POST", br.target, bToken).
						json(addMember(mustJSON(br.tpl()), path[0].(string), v, true))
				}
			}
		}
		// Idempotency-Key variants.
		if br.idem {
			for _, k := range []struct {
				what string
				keys []string
				want []int
			}{
				{"empty", []string{""}, []int{400}},
				{"256 characters", []string{strings.Repeat("k", 256)}, []int{400}},
				{"4 KB", []string{strings.Repeat("k", 4096)}, []int{400}},
				{"a tab inside", []string{"a\tb"}, []int{400}},
				{"a control character", []string{"a\x01b"}, []int{400}},
				{"DEL", []string{"a\x7fb"}, []int{400}},
				{"two headers", []string{"probe-two-1", "probe-two-2"}, []int{400}},
				{"two equal headers", []string{"probe-two-3", "probe-two-3"}, []int{400}},
				{"unicode", []string{"clé-ü-🛒"}, []int{400}},
				{"RTL override", []string{"\u202ekey"}, []int{400}},
				{"255 characters", []string{strings.Repeat("k", 254) + br.route[len(br.route)-1:]}, nil},
			} {
				p := newP(&fixed, br.route, "Idempotency-Key "+k.what, "POST", br.target, bToken)
				for _, key := range k.keys {
					p.header("Idempotency-Key", key)
				}
				p.json(mustJSON(br.tpl())).want = k.want
			}
		}
	}

	// 2. Path IDs.
	pathIDs := []string{
		"..", "../..", "%2e%2e", ".", "%00", "a%00b", ordA + "%00", "%zz", "%", "%2F", "a%2Fb", "a%2F..%2F..",
		strings.Repeat("A", 5000), "%C3%BC%C3%B1%C3%AF%C3%A7%C3%B8d%C3%A9", "\xc3\xbcnic\xc3\xb6de", "%E2%80%AEgnp.exe",
		"%FF%FE", "%27%20OR%20%271%27%3D%271", "1%3BDROP%20TABLE%20orders", "~1items~10", "%2Fitems%2F0",
		"%7B%22%24gt%22%3A%22%22%7D", "*", "%20", strings.ToLower(ordA), ordA + "%20", "%0D%0AX-Injected:%201",
		"null", "-1", "0", ordA + "%2F..%2F" + ordB, pub,
	}
	for _, id := range pathIDs {
		newP(&fixed, "DELETE /v1/cart/items/{id}", "path id "+clipStr(id, 30), "DELETE", "/v1/cart/items/"+id, bToken)
		newP(&fixed, "GET /v1/orders/{id}", "path id "+clipStr(id, 30), "GET", "/v1/orders/"+id, bToken)
		for _, step := range []string{"cancel", "ship", "deliver"} {
			newP(&fixed, "POST /v1/orders/{id}/"+step, "path id "+clipStr(id, 30), "POST", "/v1/orders/"+id+"/"+step, bToken)
		}
	}
	// Another user's order: a stranger must not learn it exists.
	for _, id := range []string{ordA, ordB} {
		newP(&fixed, "GET /v1/orders/{id}", "a stranger reads the buyer's order", "GET", "/v1/orders/"+id, xToken).expect(404)
		for _, step := range []string{"cancel", "ship", "deliver"} {
			newP(&fixed, "POST /v1/orders/{id}/"+step, "a stranger on the buyer's order", "POST", "/v1/orders/"+id+"/"+step, xToken).expect(404)
			newP(&fixed, "POST /v1/orders/{id}/"+step, "a stranger on the buyer's order, with a body", "POST", "/v1/orders/"+id+"/"+step, xToken).
				json([]byte(`{"force":true}`)).expect(404, 400)
		}
		newP(&fixed, "DELETE /v1/cart/items/{id}", "an order ID as a cart line", "DELETE", "/v1/cart/items/"+id, xToken)
	}
	newP(&fixed, "POST /v1/orders/{id}/ship", "the buyer ships their own order", "POST", "/v1/orders/"+ordB+"/ship", bToken).expect(403, 404, 409)
	newP(&fixed, "POST /v1/orders/{id}/deliver", "the buyer delivers their own order", "POST", "/v1/orders/"+ordB+"/deliver", bToken).expect(403, 404, 409)
	newP(&fixed, "POST /v1/orders/{id}/cancel", "the seller cancels the buyer's order", "POST", "/v1/orders/"+ordB+"/cancel", sToken).expect(403, 404, 409)

	// 3. Authorization on every authenticated route.
	authRoutes := []struct{ route, method, target string }{
		{"POST /v1/cart/items", "POST", "/v1/cart/items"},
		{"DELETE /v1/cart/items/{id}", "DELETE", "/v1/cart/items/" + pub},
		{"GET /v1/cart", "GET", "/v1/cart"},
		{"POST /v1/cart/checkout", "POST", "/v1/cart/checkout"},
		{"POST /v1/orders", "POST", "/v1/orders"},
		{"GET /v1/orders", "GET", "/v1/orders"},
		{"GET /v1/orders/{id}", "GET", "/v1/orders/" + ordA},
		{"POST /v1/orders/{id}/cancel", "POST", "/v1/orders/" + ordA + "/cancel"},
		{"POST /v1/orders/{id}/ship", "POST", "/v1/orders/" + ordA + "/ship"},
		{"POST /v1/orders/{id}/deliver", "POST", "/v1/orders/" + ordA + "/deliver"},
	}
	b64 := base64.RawURLEncoding.EncodeToString
	parts := strings.Split(bToken, ".")
	expiredClaims := b64([]byte(fmt.Sprintf(`{"sub":%q,"exp":1,"iat":0}`, buyerID)))
	authVariants := []struct{ what, value string }{
		{"missing", ""},
		{"Bearer alone", "Bearer"},
		{"Bearer and spaces", "Bearer    "},
		{"Basic", "Basic " + b64([]byte("probe-buyer@example.com:correct horse"))},
		{"garbage", "Bearer garbage"},
		{"three empty segments", "Bearer .."},
		{"garbage JWT", "Bearer a.b.c"},
		{"expired-looking JWT", "Bearer " + b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + expiredClaims + "." + b64([]byte("sig"))},
		{"alg none", "Bearer " + b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(fmt.Sprintf(`{"sub":%q}`, buyerID))) + "."},
		{"the real header, forged claims", "Bearer " + parts[0] + "." + b64([]byte(fmt.Sprintf(`{"sub":%q,"exp":9999999999}`, sellerID))) + "." + parts[len(parts)-1]},
		{"the real token, tampered", "Bearer " + bToken[:len(bToken)-2] + "xx"},
		{"8 KB token", "Bearer " + strings.Repeat("A", 8<<10)},
		{"unicode token", "Bearer tökén"},
		{"a NUL in the token", "Bearer a\x00b"},
	}
	for _, r := range authRoutes {
		for _, v := range authVariants {
			p := newP(&fixed, r.route, "Authorization "+v.what, r.method, r.target, "")
			if v.value != "" {
				p.header("Authorization", v.value)
			}
			if r.method == "POST" {
				p.json([]byte(`{}`))
			}
			p.want = []int{401}
			if strings.ContainsRune(v.value, 0) {
				// net/http refuses a header with a NUL before any handler:
				// a JSON 400 (plugins/httperr), never a 401 or plain text.
				p.want = []int{400}
			}
		}
	}

	// 4. Query strings on GET /v1/orders.
	for _, q := range []struct {
		q    string
		want []int
	}{
		{"page_size=-1", []int{400}}, {"page_size=0", []int{400}}, {"page_size=101", []int{400}}, {"page_size=abc", []int{400}},
		{"page_size=1e9", []int{400}}, {"page_size=1.5", []int{400}}, {"page_size=9223372036854775808", []int{400}},
		{"page_size=%00", []int{400}}, {"page_size=20%00", []int{400}}, {"page_size=%2B20", nil}, {"page_size=", nil},
		{"page_size=1&page_size=100", nil}, {"page_size=" + strings.Repeat("9", 5000), []int{400}},
		{"page_token=garbage", nil}, {"page_token=" + strings.Repeat("Z", 10<<10), []int{400}}, {"page_token=%00", nil},
		{"page_token=..%2F..%2F", nil}, {"page_token=" + b64([]byte(`{"after":"zzzz","offset":-5}`)), nil},
		{"page_token=%zz", []int{400}}, {"page_token=%FF%FE", nil},
		{"role=SELLER", nil}, {"role=seller%00", []int{400}}, {"role=seller&role=buyer", nil}, {"role=", nil},
		{"role=admin", []int{400}}, {"role=%C3%BC", []int{400}}, {"role=" + strings.Repeat("r", 5000), []int{400}},
		{"page_size=1;role=seller", nil}, {"%zz=1", []int{400}}, {"&&&==&", nil}, {strings.Repeat("a=1&", 2000), nil},
	} {
		newP(&fixed, "GET /v1/orders", "query "+clipStr(q.q, 40), "GET", "/v1/orders?"+q.q, bToken).want = q.want
		newP(&fuzz, "GET /v1/orders", "query as seller "+clipStr(q.q, 40), "GET", "/v1/orders?role=seller&"+q.q, sToken)
	}
	// Chunked bodies (no Content-Length to trust) and hostile request IDs.
	chunked2MiB := []byte(`{"publication_id":"` + strings.Repeat("x", twoMiB) + `","quantity":1}`)
	for _, r := range []struct{ route, target, token string }{
		{"POST /v1/cart/items", "/v1/cart/items", bToken}, {"POST /v1/orders", "/v1/orders", bToken}, {hookRouteName, "/v1/payments/webhook", ""},
	} {
		p := newP(&fixed, r.route, "a 2 MiB chunked body", "POST", r.target, r.token).header("X-Signature", "t=1,v1=00").json(chunked2MiB)
		p.chunked, p.want = true, []int{401, 413}
		p = newP(&fixed, r.route, "a small chunked body", "POST", r.target, r.token).json([]byte(`{"publication_id":"` + pub + `","quantity":1}`))
		p.chunked = true
	}
	for _, rid := range []string{strings.Repeat("r", 5000), "ünïcødé", "a b", "a\tb", "<script>", "../../x", ""} {
		newP(&fixed, "GET /v1/cart", "X-Request-Id "+clipStr(rid, 20), "GET", "/v1/cart", bToken).header("X-Request-Id", rid).expect(200)
		newP(&fixed, "GET /v1/orders/{id}", "X-Request-Id "+clipStr(rid, 20), "GET", "/v1/orders/nope", bToken).header("X-Request-Id", rid).expect(404)
	}
	newP(&fixed, "GET /v1/cart", "a cart read with a 2 MiB body", "GET", "/v1/cart", bToken).json(garbage)
	newP(&fixed, "GET /v1/cart", "a cart read with a query", "GET", "/v1/cart?page_size=-1&x=%zz", bToken)
	newP(&fixed, "GET /v1/orders", "an order list with a JSON body", "GET", "/v1/orders", bToken).json([]byte(`{"role":"seller"}`))

	// 5. The payment webhook's signature.
	hook := "/v1/payments/webhook"
	hookRoute := hookRouteName
	ev := mustJSON(eventTpl())
	now := time.Now()
	good := signWebhook(secret, ev, now)
	goodV1 := good[strings.Index(good, "v1=")+3:]
	ts := strconv.FormatInt(now.Unix(), 10)
	manyBad := strings.Repeat("v1="+strings.Repeat("0", 64)+",", 1000)
	for _, s := range []struct {
		what string
		sigs []string
		want []int
	}{
		{"missing", nil, []int{401}},
		{"empty", []string{""}, []int{401}},
		{"t= alone", []string{"t="}, []int{401}},
		{"v1= alone", []string{"v1="}, []int{401}},
		{"t= and v1= empty", []string{"t=,v1="}, []int{401}},
		{"no t", []string{"v1=" + goodV1}, []int{401}},
		{"garbage", []string{"t=abc,v1=def"}, []int{401}},
		{"huge", []string{"t=" + ts + ",v1=" + strings.Repeat("a", 100<<10)}, []int{401}},
		{"1000 wrong v1 values", []string{"t=" + ts + "," + manyBad + "v1=00"}, []int{401}},
		{"1000 wrong v1 values, then the right one", []string{"t=" + ts + "," + manyBad + "v1=" + goodV1}, nil},
		{"the right v1 under another t", []string{"t=" + strconv.FormatInt(now.Unix()+1, 10) + ",v1=" + goodV1}, []int{401}},
		{"correctly signed 10 years ahead", []string{signWebhook(secret, ev, now.AddDate(10, 0, 0))}, []int{401}},
		{"correctly signed 6 minutes ahead", []string{signWebhook(secret, ev, now.Add(6*time.Minute))}, []int{401}},
		{"correctly signed at t=0", []string{signWebhook(secret, ev, time.Unix(0, 0))}, []int{401}},
		{"t = max int64", []string{"t=9223372036854775807,v1=" + goodV1}, []int{401}},
		{"t = max int64 + 1", []string{"t=9223372036854775808,v1=" + goodV1}, []int{401}},
		{"t = -1", []string{"t=-1,v1=" + goodV1}, []int{401}},
		{"upper-case hex", []string{"t=" + ts + ",v1=" + strings.ToUpper(goodV1)}, []int{401}},
		{"v0 scheme", []string{"t=" + ts + ",v0=" + goodV1}, []int{401}},
		{"a NUL inside", []string{"t=" + ts + ",v1=\x00" + goodV1}, []int{400}}, // net/http refuses it first: JSON 400
		{"unicode", []string{"t=" + ts + ",v1=ünïcødé"}, []int{401}},
		{"two headers, the bad one first", []string{"t=1,v1=00", good}, nil},
		{"two headers, the good one first", []string{good, "t=1,v1=00"}, nil},
		{"only commas", []string{",,,,,,"}, []int{401}},
	} {
		p := newP(&fixed, hookRoute, "X-Signature "+s.what, "POST", hook, "")
		for _, sig := range s.sigs {
			p.header("X-Signature", sig)
		}
		p.json(ev).want = s.want
	}
	newP(&fixed, hookRoute, "signed body, then mutated", "POST", hook, "").header("X-Signature", good).
		json(bytes.Replace(ev, []byte("1000"), []byte("1"), 1)).expect(401)
	newP(&fixed, hookRoute, "signed, no Content-Type", "POST", hook, "").header("X-Signature", good).raw(ev).expect(415)
	newP(&fixed, hookRoute, "signed, text/plain", "POST", hook, "").header("X-Signature", good).header("Content-Type", "text/plain").raw(ev).expect(415)
	newP(&fixed, hookRoute, "2 MiB unsigned", "POST", hook, "").header("X-Signature", "t=1,v1=00").json(garbage).expect(401, 413)
	for _, g := range []struct{ what, body string }{
		{"empty", ""}, {"null", "null"}, {"an array", "[]"}, {"a number", "1e308"}, {"deep", deepObj},
		{"trailing garbage", string(ev) + "xyz"}, {"invalid UTF-8", "{\"id\":\"\xff\"}"},
		{"a 60 KB string", `{"id":` + jsonStr(strings.Repeat("e", 60<<10)) + `}`},
		{"a 5000-digit number", `{"id":"evt_probe_big","type":"payment.succeeded","created":` + bigDigits + `}`},
		{"an unknown field with a 50 KB name", string(addMember(ev, strings.Repeat("k", 50<<10), "1", false))},
		{"duplicate ids", string(addMember(ev, "id", `"evt_probe_dup"`, false))},
	} {
		// Unsigned: 401 whatever the body. Signed: the provider's word, but junk is still a 4xx.
		newP(&fixed, hookRoute, "unsigned "+g.what, "POST", hook, "").json([]byte(g.body)).expect(401)
		newP(&fixed, hookRoute, "signed "+g.what, "POST", hook, "").header("X-Signature", signWebhook(secret, []byte(g.body), now)).json([]byte(g.body))
	}
	// Signed events with a hostile value at each field (the provider trusted, its payload not).
	for _, path := range [][]any{{"id"}, {"type"}, {"created"}, {"data"}, {"data", "charge_id"}, {"data", "order_id"},
		{"data", "amount"}, {"data", "amount", "amount"}, {"data", "amount", "currency"}} {
		for _, v := range hostileVals {
			body := withHole(eventTpl, path, v)
			newP(&fuzz, hookRoute, "signed event, "+pathName(path)+" = "+clipStr(v, 30), "POST", hook, "").
				header("X-Signature", signWebhook(secret, body, now)).json(body)
		}
	}
	// Signed events about real orders with the wrong charge, amount or type.
	for i, o := range []string{ordA, ordB} {
		for _, typ := range []string{"payment.succeeded", "payment.failed", "payment.refunded"} {
			for _, amt := range []int64{1000, 1, -1000, 1 << 62} {
				b := mustJSON(map[string]any{"id": fmt.Sprintf("evt_probe_real_%d_%s_%d", i, typ, amt), "type": typ, "created": now.Unix(),
					"data": map[string]any{"charge_id": "ch_probe_" + typ, "order_id": o, "amount": map[string]any{"amount": amt, "currency": "USD"}}})
				newP(&fuzz, hookRoute, fmt.Sprintf("signed %s of %d for a real order, unknown charge", typ, amt), "POST", hook, "").
					header("X-Signature", signWebhook(secret, b, now)).json(b)
			}
		}
	}

	// 6. Random mixes: a random route, body mutation and header mix.
	tokens := []string{bToken, bToken, bToken, xToken, sToken}
	for range 300 {
		br := bodyRoutes[rng.IntN(len(bodyRoutes))]
		path := br.paths[rng.IntN(len(br.paths))]
		v := hostileVals[rng.IntN(len(hostileVals))]
		body := withHole(br.tpl, path, v)
		switch rng.IntN(4) {
		case 0:
			body = addMember(body, fmt.Sprintf("x%d", rng.IntN(1000)), hostileVals[rng.IntN(len(hostileVals))], rng.IntN(2) == 0)
		case 1:
			body = append(body, hostileVals[rng.IntN(len(hostileVals))]...)
		}
		p := newP(&fuzz, br.route, "mix "+pathName(path)+" = "+clipStr(v, 30), "POST", br.target, tokens[rng.IntN(len(tokens))])
		if rng.IntN(3) == 0 {
			p.header("Idempotency-Key", []string{"", "mix-" + strconv.Itoa(rng.IntN(5)), strings.Repeat("z", 256), "ü"}[rng.IntN(4)])
		}
		p.json(body)
	}
	for range 60 {
		id := pathIDs[rng.IntN(len(pathIDs))]
		if rng.IntN(2) == 0 {
			id = []string{ordA, ordB}[rng.IntN(2)]
		}
		step := []string{"cancel", "ship", "deliver"}[rng.IntN(3)]
		tok := tokens[rng.IntN(len(tokens))]
		p := newP(&fuzz, "POST /v1/orders/{id}/"+step, "mix path "+clipStr(id, 30), "POST", "/v1/orders/"+id+"/"+step, tok)
		if rng.IntN(2) == 0 {
			p.header("Idempotency-Key", fmt.Sprintf("mix-step-%d", rng.IntN(4)))
		}
		if tok == xToken && (id == ordA || id == ordB) {
			p.want = []int{404}
		}
	}

	// Fit the budget: every fixed probe, then a seeded sample of the rest.
	rng.Shuffle(len(fuzz), func(i, j int) { fuzz[i], fuzz[j] = fuzz[j], fuzz[i] })
	all := fixed
	if room := probeMaxRequests - len(fixed); room > 0 {
		all = append(all, fuzz[:min(room, len(fuzz))]...)
	}
	t.Logf("%d probes (%d fixed, %d of %d sampled), seed %d", len(all), len(fixed), len(all)-len(fixed), len(fuzz), probeSeed)

	// The barrage.
	type result struct {
		p *probe
		a probeAnswer
	}
	results := make([]result, len(all))
	ctx, cancel := context.WithTimeout(context.Background(), probeBudget)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	for range probeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = result{all[i], sendProbe(addr, all[i])}
			}
		}()
	}
	start := time.Now()
	sent := 0
feed:
	for i := range all {
		select {
		case next <- i:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	took := time.Since(start)

	// Verdicts, grouped by rule and route so that a systematic fault reads as one.
	type group struct {
		n        int
		examples []string
	}
	groups := map[string]*group{}
	statuses := map[int]int{}
	var slowest time.Duration
	verbose := os.Getenv("PROBE_VERBOSE") != ""
	for _, r := range results[:sent] {
		a := r.a
		if verbose {
			b := a.raw
			if len(b) > 160 {
				b = b[:160]
			}
			t.Logf("probe %s %s [%s] → %d %s", r.p.method, clipStr(r.p.target, 60), r.p.what, a.status, b)
		}
		statuses[a.status]++
		slowest = max(slowest, a.took)
		for _, rule := range checkProbe(r.p, a) {
			key := fmt.Sprintf("%s — %s %s", rule, r.p.route, strconv.Itoa(a.status))
			g := groups[key]
			if g == nil {
				g = &group{}
				groups[key] = g
			}
			g.n++
			if len(g.examples) < 3 {
				g.examples = append(g.examples, r.p.summary()+"\n        → "+a.summary())
			}
		}
	}
	t.Logf("%d of %d probes sent in %v (slowest answer %v); statuses %v", sent, len(all), took.Round(time.Millisecond), slowest.Round(time.Millisecond), statuses)
	if sent < len(all) {
		t.Logf("the %v budget ran out: %d probes not sent", probeBudget, len(all)-sent)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		t.Errorf("VIOLATION %s: %d request(s), e.g.\n    %s", k, g.n, strings.Join(g.examples, "\n    "))
	}

	// Invariants.
	// 1. Nothing stays pending: the sandbox confirms after 500 ms.
	buyers := []string{bToken, xToken, sToken}
	var pending []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending = pending[:0]
		for _, tok := range buyers {
			for _, o := range m.listOrders(t, tok, "") {
				if o["status"] == "pending" {
					pending = append(pending, fmt.Sprintf("%v (created %v)", o["id"], o["created_at"]))
				}
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(pending) > 0 {
		t.Errorf("INVARIANT: %d order(s) still pending 20 s after the barrage: %v", len(pending), pending)
	}
	// 2. The stock adds up: quantity + reserved = the start minus units sold.
	sold := func() (int64, map[string]int) {
		var n int64
		byStatus := map[string]int{}
		seen := map[string]bool{}
		for _, tok := range buyers {
			for _, o := range m.listOrders(t, tok, "") {
				id, _ := o["id"].(string)
				if seen[id] {
					continue
				}
				seen[id] = true
				st, _ := o["status"].(string)
				byStatus[st]++
				if st != "paid" && st != "shipped" && st != "delivered" {
					continue
				}
				for _, l := range lines(o) {
					if l["publication_id"] == pub {
						q, _ := l["quantity"].(float64)
						n += int64(q)
					}
				}
			}
		}
		return n, byStatus
	}
	checkStock := func(when string) {
		t.Helper()
		n, byStatus := sold()
		q, r := stock()
		t.Logf("%s: orders by status %v; %d units sold; publication quantity %d, reserved %d", when, byStatus, n, q, r)
		if q+r != q0-n {
			t.Errorf("INVARIANT %s: quantity %d + reserved %d = %d, want %d - %d sold = %d", when, q, r, q+r, q0, n, q0-n)
		}
		if r != 0 && len(pending) == 0 {
			t.Logf("note %s: %d units still reserved with no order pending", when, r)
		}
	}
	checkStock("after the barrage")
	// 3. A normal order still goes through.
	a := m.placeOrder(bToken, orderBody(pub, 1, "tok_visa"), "probe-after")
	if a.status != 201 || a.body["status"] != "paid" {
		t.Errorf("INVARIANT: a normal order after the barrage: %s, want 201 paid", a)
	}
	checkStock("after a normal order")
}
