package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// Every HTTP exchange the tests have with the api is recorded, one JSON
// object a line, and checked against the OpenAPI document once the tests
// have run (TestMain: recordClients before m.Run, checkRecorded after it).
// The checker and the replay test are in openapi_replay_test.go.
//
// Environment:
//
//	E2E_RECORD_FILE=<file>  write the recording there and keep it (default:
//	                        a temp file, removed when the check passes)
//	E2E_SPEC_CHECK=off      record, but do not check (while iterating only)

// bodyCap bounds the bytes kept of each request and response body. A body
// cut there is not validated (the status and headers still are), and counted.
const bodyCap = 64 << 10

// exchange is one request to the api and its answer, as recorded.
type exchange struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Host   string    `json:"host,omitempty"`
	// Path is the escaped path, Query the raw query, as sent.
	Path     string      `json:"path"`
	Query    string      `json:"query,omitempty"`
	Request  message     `json:"request"`
	Status   int         `json:"status"` // 0: no answer (Error says why)
	Response message     `json:"response"`
	Error    string      `json:"error,omitempty"`
	Took     jsonSeconds `json:"took_s,omitempty"`
}

// message is the headers and body of a request or a response.
type message struct {
	Headers http.Header `json:"headers,omitempty"`
	// Body holds the body if it is UTF-8, Base64 otherwise; at most bodyCap bytes.
	Body   string `json:"body,omitempty"`
	Base64 string `json:"body_base64,omitempty"`
	// Size is the number of bytes the body had (-1: unknown).
	Size int64 `json:"body_size"`
	// Truncated: the body was over bodyCap; only its start was kept.
	Truncated bool `json:"body_truncated,omitempty"`
	// Incomplete: the test stopped reading before the end (or reading
	// failed: ReadError), so the body kept is only what it read.
	Incomplete bool   `json:"body_incomplete,omitempty"`
	ReadError  string `json:"body_read_error,omitempty"`
}

type jsonSeconds float64

// bytes returns the body kept.
func (m *message) bytes() []byte {
	if m.Base64 != "" {
		b, err := base64.StdEncoding.DecodeString(m.Base64)
		if err == nil {
			return b
		}
	}
	return []byte(m.Body)
}

func (m *message) setBody(b []byte) {
	if utf8.Valid(b) {
		m.Body, m.Base64 = string(b), ""
	} else {
		m.Body, m.Base64 = "", base64.StdEncoding.EncodeToString(b)
	}
}

// partial says why the body cannot be validated ("" if it can).
func (m *message) partial() string {
	switch {
	case m.Truncated:
		return fmt.Sprintf("over %d KiB, kept only its start", bodyCap>>10)
	case m.Incomplete && m.ReadError != "":
		return "reading it failed: " + m.ReadError
	case m.Incomplete:
		return "the test stopped reading it before the end"
	}
	return ""
}

// recording is the file the exchanges go to.
type recording struct {
	path string
	keep bool

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	enc     *json.Encoder
	n       int
	err     error
	pending map[*capture]*exchange // answers whose body is still being read
	closed  bool
}

// rec is the recording of this run; nil when not recording.
var rec *recording

var seq atomic.Int64

// recordClients makes clients record every exchange. A benchmark run is not
// recorded: the recording would be part of what the benchmarks measure.
func recordClients(clients ...*http.Client) {
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		fmt.Fprintln(os.Stderr, "e2e: benchmarking: HTTP exchanges are neither recorded nor checked against the OpenAPI document")
		return
	}
	l, err := newRecording(os.Getenv("E2E_RECORD_FILE"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: recording: %v\n", err)
		os.Exit(1)
	}
	rec = l
	for _, c := range clients {
		next := c.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		c.Transport = &recorder{next: next, log: rec}
	}
}

// newRecording creates the file path, or a temp file if path is "".
func newRecording(path string) (*recording, error) {
	var f *os.File
	var err error
	if path != "" {
		f, err = os.Create(path)
	} else {
		f, err = os.CreateTemp("", "marketmesh-e2e-recorded-*.jsonl")
	}
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	l := &recording{path: f.Name(), keep: path != "", f: f, w: w, enc: json.NewEncoder(w),
		pending: map[*capture]*exchange{}}
	l.enc.SetEscapeHTML(false)
	return l, nil
}

func (l *recording) write(ex *exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if err := l.enc.Encode(ex); err != nil && l.err == nil {
		l.err = err
	}
	l.n++
}

// close writes the answers whose bodies were never closed (as incomplete)
// and closes the file.
func (l *recording) close() (int, error) {
	l.mu.Lock()
	pending := l.pending
	l.pending = map[*capture]*exchange{}
	l.mu.Unlock()
	for c, ex := range pending {
		finishResponse(ex, c, -1, "")
		ex.Response.Incomplete = true
		l.write(ex)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
	if err := l.f.Close(); err != nil && l.err == nil {
		l.err = err
	}
	return l.n, l.err
}

// recorder is the http.RoundTripper that records.
type recorder struct {
	next http.RoundTripper
	log  *recording
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	ex := &exchange{Seq: seq.Add(1), Time: start.UTC(), Method: req.Method, Host: req.URL.Host,
		Path: req.URL.EscapedPath(), Query: req.URL.RawQuery}
	ex.Request.Headers = redact(req.Header)
	ex.Request.Size = req.ContentLength
	var reqBody *capture // a body that can be read only once: tee it
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody != nil {
			if b, err := req.GetBody(); err == nil {
				data, err := io.ReadAll(io.LimitReader(b, bodyCap+1))
				_ = b.Close()
				ex.Request.Truncated = len(data) > bodyCap
				ex.Request.setBody(data[:min(len(data), bodyCap)])
				if !ex.Request.Truncated {
					ex.Request.Size = int64(len(data))
				}
				if err != nil {
					ex.Request.Incomplete, ex.Request.ReadError = true, err.Error()
				}
			}
		} else {
			reqBody = &capture{rc: req.Body}
			req = req.WithContext(req.Context()) // a copy: RoundTrip must not change req
			req.Body = reqBody
		}
	}
	resp, err := r.next.RoundTrip(req)
	if reqBody != nil {
		data, size, eof, rerr := reqBody.snapshot()
		ex.Request.setBody(data)
		ex.Request.Size, ex.Request.Truncated = size, size > int64(len(data))
		ex.Request.Incomplete = !eof
		if rerr != nil {
			ex.Request.ReadError = rerr.Error()
		}
	}
	if err != nil {
		ex.Error = err.Error()
		ex.Took = jsonSeconds(time.Since(start).Seconds())
		r.log.write(ex)
		return resp, err
	}
	ex.Status = resp.StatusCode
	ex.Response.Headers = resp.Header.Clone()
	c := &capture{rc: resp.Body}
	length := resp.ContentLength
	c.onDone = func() {
		r.log.mu.Lock()
		_, ok := r.log.pending[c]
		delete(r.log.pending, c)
		r.log.mu.Unlock()
		if !ok {
			return // already written by close
		}
		finishResponse(ex, c, length, resp.Header.Get("Content-Type"))
		ex.Took = jsonSeconds(time.Since(start).Seconds())
		r.log.write(ex)
	}
	r.log.mu.Lock()
	r.log.pending[c] = ex
	r.log.mu.Unlock()
	resp.Body = c
	return resp, nil
}

// finishResponse fills the response body of ex from what the test read.
func finishResponse(ex *exchange, c *capture, length int64, contentType string) {
	data, size, eof, rerr := c.snapshot()
	m := &ex.Response
	m.setBody(data)
	m.Size = size
	m.Truncated = size > int64(len(data))
	complete := eof || (length >= 0 && size >= length)
	if !complete && !m.Truncated && rerr == nil {
		// A JSON decoder stops at the end of the value without asking for EOF.
		if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/json" && json.Valid(data) {
			complete = true
		}
	}
	if !eof && rerr != nil {
		m.ReadError = rerr.Error()
	}
	m.Incomplete = !complete
	if !complete {
		m.Size = -1
	}
}

// redact copies h without the bearer tokens: the shapes matter, not who.
func redact(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	if v := out.Get("Authorization"); v != "" {
		scheme, _, _ := strings.Cut(v, " ")
		out.Set("Authorization", scheme+" REDACTED")
	}
	return out
}

// capture is a body that keeps the first bodyCap bytes read through it.
type capture struct {
	rc     io.ReadCloser
	onDone func() // once: at EOF, a read error or Close

	mu   sync.Mutex
	buf  []byte
	size int64
	eof  bool
	err  error
	done bool
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.mu.Lock()
	c.size += int64(n)
	if room := bodyCap - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(n, room)]...)
	}
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil && c.err == nil:
		c.err = err
	}
	fire := err != nil && !c.done
	if fire {
		c.done = true
	}
	c.mu.Unlock()
	if fire && c.onDone != nil {
		c.onDone()
	}
	return n, err
}

func (c *capture) Close() error {
	err := c.rc.Close()
	c.mu.Lock()
	fire := !c.done
	c.done = true
	c.mu.Unlock()
	if fire && c.onDone != nil {
		c.onDone()
	}
	return err
}

func (c *capture) snapshot() (data []byte, size int64, eof bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...), c.size, c.eof, c.err
}

// checkRecorded checks the recording against the OpenAPI document and
// returns the exit code: code, or 1 if it was 0 and an exchange disagrees.
func checkRecorded(code int) int {
	if rec == nil {
		return code
	}
	n, err := rec.close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: recording to %s: %v\n", rec.path, err)
		return max(code, 1)
	}
	if n == 0 {
		_ = os.Remove(rec.path)
		return code
	}
	if os.Getenv("E2E_SPEC_CHECK") == "off" {
		fmt.Fprintf(os.Stderr, "e2e: E2E_SPEC_CHECK=off: %d HTTP exchanges recorded in %s, NOT checked against the OpenAPI document\n", n, rec.path)
		return code
	}
	rep, err := checkFile(rec.path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: checking the recorded exchanges against the OpenAPI document: %v\n", err)
		return max(code, 1)
	}
	fmt.Fprint(os.Stderr, rep.String())
	if rep.failed() {
		fmt.Fprintf(os.Stderr, "e2e: the recording is kept; after a fix re-check it without the mesh:\n"+
			"  cd e2e && E2E_RECORDED=%s go test -count=1 -run 'TestReplayRecordedAgainstSpec$' .\n", rec.path)
		return max(code, 1)
	}
	if rec.keep {
		fmt.Fprintf(os.Stderr, "e2e: recording kept in %s\n", rec.path)
	} else {
		_ = os.Remove(rec.path)
	}
	return code
}

// TestRecorderKeepsBoundedBodiesAndKnowsWhenTheyAreWhole checks the recorder
// on a local server: bodies cut at bodyCap, one-shot request bodies teed,
// bodies the test did not read to the end, and answers that never came.
func TestRecorderKeepsBoundedBodiesAndKnowsWhenTheyAreWhole(t *testing.T) {
	big := strings.Repeat("x", bodyCap+10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/big":
			_, _ = io.WriteString(w, big)
		case "/json": // chunked: no Content-Length
			w.Header().Set("Content-Type", "application/json")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, `{"a":[1,2]}`)
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, big)
		}
	}))
	defer srv.Close()
	l, err := newRecording(filepath.Join(t.TempDir(), "recorded.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &recorder{next: http.DefaultTransport, log: l}, Timeout: 10 * time.Second}
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// 1: a one-shot request body and an answer over the cap, read to the end.
	req, _ := http.NewRequest("POST", srv.URL+"/big?q=1", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); len(b) != len(big) {
		t.Fatalf("the test read %d bytes, want %d", len(b), len(big))
	}
	resp.Body.Close()
	// 2: JSON read with a decoder, which stops at the end of the value.
	resp = get("/json")
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 3: ten bytes read, then closed.
	resp = get("/text")
	_, _ = io.ReadFull(resp.Body, make([]byte, 10))
	resp.Body.Close()
	// 4: never closed before the recording is.
	open := get("/text")
	defer open.Body.Close()
	// 5: no answer.
	if _, err := c.Get("http://127.0.0.1:1/"); err == nil {
		t.Fatal("port 1 answered")
	}

	if n, err := l.close(); err != nil || n != 5 {
		t.Fatalf("close: %d exchanges, %v", n, err)
	}
	exs, err := readExchanges(l.path)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(exs, func(a, b exchange) int { return int(a.Seq - b.Seq) })
	if len(exs) != 5 {
		t.Fatalf("%d exchanges recorded, want 5", len(exs))
	}
	e := exs[0]
	if e.Method != "POST" || e.Path != "/big" || e.Query != "q=1" || e.Status != 200 ||
		e.Request.Headers.Get("Authorization") != "Bearer REDACTED" ||
		!e.Request.Truncated || len(e.Request.bytes()) != bodyCap || e.Request.Size != int64(len(big)) ||
		!e.Response.Truncated || e.Response.Incomplete || len(e.Response.bytes()) != bodyCap || e.Response.Size != int64(len(big)) {
		t.Errorf("big: %+v", e)
	}
	if e := exs[1]; e.Response.Truncated || e.Response.Incomplete || e.Response.Body != `{"a":[1,2]}` || e.Response.partial() != "" {
		t.Errorf("json: %+v", e.Response)
	}
	if e := exs[2]; !e.Response.Incomplete || e.Response.partial() == "" {
		t.Errorf("read in part: %+v", e.Response)
	}
	if e := exs[3]; !e.Response.Incomplete {
		t.Errorf("never closed: %+v", e.Response)
	}
	if e := exs[4]; e.Error == "" || e.Status != 0 {
		t.Errorf("no answer: %+v", e)
	}
}
