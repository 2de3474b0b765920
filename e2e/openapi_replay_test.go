package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The spec and the server must agree: every exchange the tests had with the
// api (recorder_test.go) is checked against the OpenAPI document the api
// serves, with kin-openapi, the library the api module checks the document
// with.

// specFile is the api's OpenAPI document, read from the api module's tree
// (the e2e module does not import the api's internals).
const specFile = "../api/internal/openapi/openapi.json"

// notInSpec are the paths the api serves that the document deliberately does
// not describe, by prefix, with the reason.
var notInSpec = map[string]string{
	"/docs/": "the Swagger UI's static assets (GET /docs, the page, is described)",
}

// TestReplayRecordedAgainstSpec checks a recording against the document
// without the mesh: E2E_RECORDED=<file> (a recording an e2e run kept, see
// recorder_test.go), or else the checked-in sample, which proves the replay
// path works: every sample exchange agrees, and mutated ones do not.
func TestReplayRecordedAgainstSpec(t *testing.T) {
	path := os.Getenv("E2E_RECORDED")
	sample := path == ""
	if sample {
		path = filepath.Join("testdata", "recorded-sample.jsonl")
	}
	rep, err := checkFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	for _, f := range rep.failures {
		t.Errorf("%s", f)
	}
	if !sample {
		return
	}
	if rep.total < 12 || len(rep.skipped) > 0 || rep.full == 0 || rep.respOnly == 0 || rep.probes == 0 {
		t.Errorf("the sample must have a dozen exchanges, none skipped, with 2xx, 4xx and unknown-route ones: %d exchanges, %d full, %d 4xx, %d probes, skipped %v",
			rep.total, rep.full, rep.respOnly, rep.probes, rep.skipped)
	}

	exs, err := readExchanges(path)
	if err != nil {
		t.Fatal(err)
	}
	find := func(method, path string, status int) exchange {
		t.Helper()
		for _, ex := range exs {
			if ex.Method == method && ex.Path == path && ex.Status == status {
				ex.Request.Headers = ex.Request.Headers.Clone()
				ex.Response.Headers = ex.Response.Headers.Clone()
				return ex
			}
		}
		t.Fatalf("the sample has no %s %s answered %d", method, path, status)
		return exchange{}
	}
	setJSON := func(m *message, edit func(map[string]any)) {
		var v map[string]any
		if err := json.Unmarshal(m.bytes(), &v); err != nil {
			t.Fatal(err)
		}
		edit(v)
		b, _ := json.Marshal(v)
		m.setBody(b)
		m.Size = int64(len(b))
	}
	c, err := newSpecChecker(specFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name  string
		ex    func() exchange
		stage string
	}{
		{"a response without a required field", func() exchange {
			ex := find("POST", "/v1/auth/register", 201)
			setJSON(&ex.Response, func(v map[string]any) { delete(v, "id") })
			return ex
		}, "response"},
		{"an undocumented status", func() exchange {
			ex := find("POST", "/v1/auth/register", 201)
			ex.Status = http.StatusTeapot
			return ex
		}, "response"},
		{"an undocumented content type", func() exchange {
			ex := find("POST", "/v1/auth/login", 200)
			ex.Response.Headers.Set("Content-Type", "text/html")
			return ex
		}, "response"},
		{"no X-Request-Id", func() exchange {
			ex := find("POST", "/v1/auth/login", 200)
			ex.Response.Headers.Del("X-Request-Id")
			return ex
		}, "response"},
		{"an error that is not the error shape", func() exchange {
			ex := find("GET", "/v1/users/me/wishlist", 400)
			setJSON(&ex.Response, func(v map[string]any) { v["error"] = "bad" })
			return ex
		}, "response"},
		{"a request the spec refuses, accepted", func() exchange {
			ex := find("POST", "/v1/auth/register", 201)
			setJSON(&ex.Request, func(v map[string]any) { v["role"] = "admin" })
			return ex
		}, "request"},
		{"a route the spec lacks, answered", func() exchange {
			ex := find("POST", "/v1/auth/register", 201)
			ex.Path = "/v1/auth/signup"
			return ex
		}, "route"},
		{"an unknown route answered without the error shape", func() exchange {
			ex := find("GET", "/v1/nothing-here", 404)
			ex.Response.Headers.Set("Content-Type", "text/plain; charset=utf-8")
			ex.Response.setBody([]byte("404 page not found\n"))
			return ex
		}, "route"},
		{"an unknown route answered 405", func() exchange {
			ex := find("GET", "/v1/nothing-here", 404)
			ex.Status = http.StatusMethodNotAllowed
			return ex
		}, "route"},
	} {
		t.Run("rejects "+m.name, func(t *testing.T) {
			ex := m.ex()
			o := c.check(&ex)
			if o.kind != failed || o.stage != m.stage {
				t.Fatalf("outcome %v (stage %q, err %v), want a %s failure", o.kind, o.stage, o.err, m.stage)
			}
			t.Logf("%s: %v", o.stage, o.err)
		})
	}
}

// specChecker checks exchanges against the document.
type specChecker struct {
	doc      *openapi3.T
	router   routers.Router
	errShape *openapi3.Schema
	schemaOp []openapi3.SchemaValidationOption
}

var registerOnce sync.Once

func newSpecChecker(path string) (*specChecker, error) {
	registerOnce.Do(func() {
		// The image downloads are binary strings; the docs page is HTML.
		for _, ct := range []string{"image/png", "image/jpeg", "image/gif", "image/webp"} {
			if openapi3filter.RegisteredBodyDecoder(ct) == nil {
				openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
			}
		}
		if openapi3filter.RegisteredBodyDecoder("text/html") == nil {
			openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		}
		// kin-openapi checks date-time and int64 out of the box, not email.
		openapi3.DefineStringFormat("email", openapi3.FormatOfStringForEmail)
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableSchemaFormatValidation()); err != nil {
		return nil, fmt.Errorf("%s is not a valid document: %w", path, err)
	}
	// The mesh runs the api on a free port, not on the documented server.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	errShape := doc.Components.Schemas["Error"]
	if errShape == nil {
		return nil, fmt.Errorf("%s has no components.schemas.Error", path)
	}
	return &specChecker{doc: doc, router: router, errShape: errShape.Value,
		schemaOp: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()}}, nil
}

// verdict is what became of one exchange.
type verdict int

const (
	okFull     verdict = iota // request and answer agree with the document
	okResponse                // a 4xx: the answer agrees; the request was bad on purpose
	okProbe                   // a route the document lacks, answered 404/405 with the error shape
	skipped                   // nothing to check
	failed                    // spec and server disagree
)

func (v verdict) String() string {
	return [...]string{"ok", "ok (answer only)", "ok (unknown-route probe)", "skipped", "failed"}[v]
}

// outcome is the check of one exchange.
type outcome struct {
	kind  verdict
	route string   // "METHOD /template", or the method and raw path
	why   string   // skipped: why
	notes []string // parts not checked, and why
	stage string   // failed: "route", "request" or "response"
	err   error
	lax   bool // a 400/422 to a request the document accepts
}

// check checks one exchange.
func (c *specChecker) check(ex *exchange) outcome {
	ctx := context.Background()
	o := outcome{route: ex.Method + " " + ex.Path}
	if ex.Error != "" || ex.Status == 0 {
		o.kind, o.why = skipped, "no answer (transport error, e.g. a process killed on purpose)"
		return o
	}
	req, err := ex.httpRequest(ctx)
	if err != nil {
		return o.fail("request", fmt.Errorf("recorded request unusable: %w", err))
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		for prefix, reason := range notInSpec {
			if strings.HasPrefix(req.URL.Path, prefix) {
				o.kind, o.why = skipped, "not in the document on purpose: "+prefix+" ("+reason+")"
				return o
			}
		}
		want := http.StatusNotFound
		if errors.Is(err, routers.ErrMethodNotAllowed) {
			want = http.StatusMethodNotAllowed
		}
		if ex.Status != want {
			return o.fail("route", fmt.Errorf("the document has no such operation (%v) but the server answered %d, not %d", err, ex.Status, want))
		}
		if err := c.errorShape(ex); err != nil {
			return o.fail("route", fmt.Errorf("%d for a route the document lacks: %w", ex.Status, err))
		}
		o.kind = okProbe
		return o
	}
	o.route = ex.Method + " " + route.Path

	reqOpts := &openapi3filter.Options{
		AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc, // shapes, not who
		MultiError:              true,
		SchemaValidationOptions: c.schemaOp,
	}
	if why := ex.Request.partial(); why != "" && ex.Request.Size != 0 {
		reqOpts.ExcludeRequestBody = true
		o.notes = append(o.notes, "request body not checked: "+why)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: reqOpts}
	if ex.Status >= 400 && ex.Status < 500 {
		// The test sent a bad request on purpose (or a good one the server
		// refuses for reasons the document cannot express): only the answer
		// must agree. A 400/422 the document would accept is noted.
		if (ex.Status == 400 || ex.Status == 422) && !reqOpts.ExcludeRequestBody {
			o.lax = openapi3filter.ValidateRequest(ctx, in) == nil
		}
	} else if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return o.fail("request", fmt.Errorf("the server answered %d to a request the document refuses: %w", ex.Status, err))
	}

	op := route.Operation
	resp := op.Responses.Status(ex.Status)
	if resp == nil {
		resp = op.Responses.Default()
	}
	if resp == nil || resp.Value == nil {
		return o.fail("response", fmt.Errorf("status %d is not documented (documented: %s)", ex.Status, documented(op)))
	}
	respOpts := &openapi3filter.Options{
		IncludeResponseStatus:   true,
		MultiError:              true,
		SchemaValidationOptions: c.schemaOp,
	}
	body := ex.Response.bytes()
	if why := ex.Response.partial(); why != "" {
		respOpts.ExcludeResponseBody = true
		o.notes = append(o.notes, "response body not checked: "+why)
	}
	if len(resp.Value.Content) == 0 && len(body) > 0 && ex.Status != http.StatusNotModified {
		return o.fail("response", fmt.Errorf("the document gives %d no body, the server sent %d bytes of %q",
			ex.Status, len(body), ex.Response.Headers.Get("Content-Type")))
	}
	if ex.Status == http.StatusNotModified {
		// kin-openapi skips 304s; their headers are still documented.
		for name, h := range resp.Value.Headers {
			if h.Value != nil && h.Value.Required && ex.Response.Headers.Get(name) == "" {
				return o.fail("response", fmt.Errorf("response header %q missing", name))
			}
		}
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 ex.Status,
		Header:                 ex.Response.Headers,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                respOpts,
	})
	if err != nil {
		return o.fail("response", err)
	}
	if ex.Status >= 400 && ex.Status < 500 {
		o.kind = okResponse
	} else {
		o.kind = okFull
	}
	return o
}

func (o outcome) fail(stage string, err error) outcome {
	o.kind, o.stage, o.err = failed, stage, err
	return o
}

// errorShape checks an answer is the API's error document, with the
// X-Request-Id header equal to its request_id.
func (c *specChecker) errorShape(ex *exchange) error {
	ct := ex.Response.Headers.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	if why := ex.Response.partial(); why != "" {
		return fmt.Errorf("body %s", why)
	}
	var v any
	if err := json.Unmarshal(ex.Response.bytes(), &v); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if err := c.errShape.VisitJSON(v, c.schemaOp...); err != nil {
		return fmt.Errorf("body is not an Error: %w", err)
	}
	rid, _ := v.(map[string]any)["error"].(map[string]any)["request_id"].(string)
	if h := ex.Response.Headers.Get("X-Request-Id"); h == "" || h != rid {
		return fmt.Errorf("X-Request-Id %q differs from the error's request_id %q", h, rid)
	}
	return nil
}

func documented(op *openapi3.Operation) string {
	var codes []string
	for code := range op.Responses.Map() {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	return strings.Join(codes, ", ")
}

// httpRequest rebuilds the recorded request, for the validators.
func (ex *exchange) httpRequest(ctx context.Context) (*http.Request, error) {
	u := &url.URL{Scheme: "http", Host: "localhost", RawQuery: ex.Query}
	if p, err := url.PathUnescape(ex.Path); err == nil {
		u.Path, u.RawPath = p, ex.Path
	} else {
		u.Path = ex.Path
	}
	req, err := http.NewRequestWithContext(ctx, ex.Method, "http://localhost/", nil)
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.Header = ex.Request.Headers.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if b := ex.Request.bytes(); len(b) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.ContentLength = int64(len(b))
	}
	return req, nil
}

// specReport sums up the check of a recording.
type specReport struct {
	file                   string
	total                  int
	full, respOnly, probes int
	skipped                map[string]int
	notes                  map[string]int
	lax                    map[string]int
	laxExample             map[string]string
	failures               []*failure
	failedCount            int
}

// failure is one way spec and server disagree, with its first exchange.
type failure struct {
	key   string
	count int
	ex    exchange
	o     outcome
}

func (f *failure) String() string {
	ex := f.ex
	target := ex.Path
	if ex.Query != "" {
		target += "?" + ex.Query
	}
	body := ex.Response.bytes()
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("%s %s -> %d [%s; %s; %d exchange(s), first #%d]\n    %s\n    response body: %q",
		ex.Method, target, ex.Status, f.o.stage, f.o.route, f.count, ex.Seq, summarize(f.o.err), body)
}

var arrayIndex = regexp.MustCompile(`/[0-9]+(/|")`)

// summarize is the error with array indices in JSON pointers replaced by
// "*" and repeated parts of a multi-error given once: the same disagreement
// in every element of a list is one disagreement.
func summarize(err error) string {
	s := arrayIndex.ReplaceAllString(err.Error(), "/*$1")
	prefix := ""
	if i := strings.Index(s, "Error at "); i > 0 {
		prefix, s = s[:i], s[i:]
	}
	var parts []string
	for _, p := range strings.Split(s, " | ") {
		if !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	return prefix + strings.Join(parts, " | ")
}

func (r *specReport) failed() bool { return r.failedCount > 0 }

func (r *specReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "e2e: OpenAPI check of %d recorded HTTP exchanges (%s) against %s:\n", r.total, r.file, specFile)
	fmt.Fprintf(&b, "  %d request and answer checked, %d 4xx answers checked (the request was bad on purpose), %d unknown-route probes with the error shape\n",
		r.full, r.respOnly, r.probes)
	counts := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		keys := make([]string, 0, len(m))
		n := 0
		for k, v := range m {
			keys = append(keys, k)
			n += v
		}
		sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
		fmt.Fprintf(&b, "  %s: %d\n", title, n)
		for i, k := range keys {
			if i == 20 {
				fmt.Fprintf(&b, "    ... and %d more\n", len(keys)-i)
				break
			}
			fmt.Fprintf(&b, "    %6d  %s\n", m[k], k)
		}
	}
	counts("skipped", r.skipped)
	counts("checked in part", r.notes)
	counts("note: 400/422 answers to requests the document accepts (the server is stricter than the document)", r.lax)
	if len(r.lax) > 0 {
		keys := make([]string, 0, len(r.lax))
		for k := range r.lax {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "    first of each:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "      %s: %s\n", k, r.laxExample[k])
		}
	}
	if !r.failed() {
		fmt.Fprintf(&b, "  spec and server agree\n")
		return b.String()
	}
	fmt.Fprintf(&b, "  FAIL: %d exchanges disagree with the document, in %d ways:\n", r.failedCount, len(r.failures))
	for i, f := range r.failures {
		if i == 50 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(r.failures)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", f)
	}
	return b.String()
}

// readExchanges reads a recording.
func readExchanges(path string) ([]exchange, error) {
	var out []exchange
	err := eachExchange(path, func(ex exchange) { out = append(out, ex) })
	return out, err
}

func eachExchange(path string, fn func(exchange)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rd := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		raw, err := rd.ReadBytes('\n')
		if len(bytes.TrimSpace(raw)) > 0 {
			var ex exchange
			if err := json.Unmarshal(raw, &ex); err != nil {
				return fmt.Errorf("%s:%d: %w", path, line, err)
			}
			fn(ex)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkFile checks every exchange of a recording.
func checkFile(path string) (*specReport, error) {
	c, err := newSpecChecker(specFile)
	if err != nil {
		return nil, err
	}
	r := &specReport{file: path, skipped: map[string]int{}, notes: map[string]int{}, lax: map[string]int{}, laxExample: map[string]string{}}
	byKey := map[string]*failure{}
	err = eachExchange(path, func(ex exchange) {
		r.total++
		o := c.check(&ex)
		for _, n := range o.notes {
			r.notes[n]++
		}
		if o.lax {
			k := fmt.Sprintf("%s -> %d", o.route, ex.Status)
			if r.lax[k] == 0 {
				var e struct {
					Error struct{ Message string }
				}
				_ = json.Unmarshal(ex.Response.bytes(), &e)
				r.laxExample[k] = fmt.Sprintf("%s%s: %q", ex.Method, " "+ex.Path, e.Error.Message)
			}
			r.lax[k]++
		}
		switch o.kind {
		case okFull:
			r.full++
		case okResponse:
			r.respOnly++
		case okProbe:
			r.probes++
		case skipped:
			r.skipped[o.why]++
		case failed:
			r.failedCount++
			key := fmt.Sprintf("%s|%d|%s|%s", o.route, ex.Status, o.stage, summarize(o.err))
			if o.stage == "route" {
				key = fmt.Sprintf("%s|%d|%s", ex.Method, ex.Status, summarize(o.err)) // paths hold IDs
			}
			if f := byKey[key]; f != nil {
				f.count++
				return
			}
			f := &failure{key: key, count: 1, ex: ex, o: o}
			byKey[key] = f
			r.failures = append(r.failures, f)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(r.failures, func(a, b *failure) int { return strings.Compare(a.key, b.key) })
	return r, nil
}
