package httperr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/apierror"
)

// errorHeaders as net/http's server.go writes it; the formats below are its
// Fprintf formats, so these are the exact bytes net/http puts on the wire.
const goErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func goStatusError(code int, text string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s: %s%s%d %s: %s", code, http.StatusText(code), text, goErrorHeaders, code, http.StatusText(code), text)
}

var (
	go431     = "HTTP/1.1 " + "431 Request Header Fields Too Large" + goErrorHeaders + "431 Request Header Fields Too Large"
	go501     = fmt.Sprintf("HTTP/1.1 %d %s%sUnsupported transfer encoding", 501, http.StatusText(501), goErrorHeaders)
	go400     = "HTTP/1.1 " + "400 Bad Request" + goErrorHeaders + "400 Bad Request"
	goHTTPS   = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
	maxHeader = 1 << 10
)

// handler serves the normal responses compared byte for byte. It drops the
// Date header so that two servers answer identically.
func handler(t *testing.T) http.Handler {
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	if err := os.WriteFile(file, pattern(3<<20+17), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		// A handler's own plain-text 400 with Connection: close.
		w.Header().Set("Connection", "close")
		http.Error(w, "400 Bad Request", http.StatusBadRequest)
	})
	mux.HandleFunc("/lookalike", func(w http.ResponseWriter, r *http.Request) {
		// A body written on its own that starts like net/http's errors.
		body := "HTTP/1.1 400 Bad Request" + goErrorHeaders + "400 Bad Request, but a body"
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		io.WriteString(w, body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// Chunked, flushed every 32 KiB: 2 MiB and a bit.
		p := pattern(2<<20 + 5)
		for len(p) > 0 {
			n := min(len(p), 32<<10)
			w.Write(p[:n])
			w.(http.Flusher).Flush()
			p = p[n:]
		}
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		// Content-Length and an *os.File: the ReadFrom (sendfile) path.
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		fi, _ := f.Stat()
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		io.Copy(w, f)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		mux.ServeHTTP(w, r)
	})
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/251)
	}
	return p
}

// serve starts a real server on 127.0.0.1:0, its listener wrapped or not.
func serve(t *testing.T, h http.Handler, wrap bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap {
		ln = Listener(ln)
	}
	srv := &http.Server{Handler: h, MaxHeaderBytes: maxHeader, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return addr
}

// converse sends each request on one connection, reading a whole response
// after each but the last, then reads to EOF. It returns every byte read.
func converse(t *testing.T, addr string, reqs ...string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for i, req := range reqs {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("write request %d: %v", i, err)
		}
		if i == len(reqs)-1 {
			break
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		resp.Body.Close()
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("reading to EOF: %v (after %d bytes)", err, raw.Len())
	}
	return raw.Bytes()
}

func TestServerErrorsAreJSON(t *testing.T) {
	h := handler(t)
	addr, plain := serve(t, h, true), serve(t, h, false)
	bigHeader := "X-Big: " + strings.Repeat("a", maxHeader+8<<10) + "\r\n"
	tests := []struct {
		name    string
		req     string
		status  int
		code    string
		message string
	}{
		{"an invalid URI", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"a control byte in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"a header line without a colon", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"a malformed request line", "GET\r\nHost: x\r\n\r\n", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"a malformed HTTP version", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"two Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"an unsupported HTTP version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", "invalid request: unsupported protocol version"},
		{"no Host header", "GET / HTTP/1.1\r\n\r\n", 400, "bad_request", "invalid request: missing required Host header"},
		{"a malformed Host header", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_request", "invalid request: malformed Host header"},
		{"an invalid header name", "GET / HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n", 400, "bad_request", "invalid request: invalid header name"},
		{"headers over MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: x\r\n" + bigHeader + "\r\n", 431, "header_too_large", "invalid request: request header fields too large"},
		{"a request line over MaxHeaderBytes", "GET /" + strings.Repeat("a", maxHeader+8<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, "header_too_large", "invalid request: request header fields too large"},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not_implemented", "invalid request: unsupported transfer encoding"},
		{"gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented", "invalid request: unsupported transfer encoding"},
		{"two Transfer-Encodings", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "not_implemented", "invalid request: unsupported transfer encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Without the wrapper, net/http's own plain-text answer.
			if got := converse(t, plain, tt.req); !bytes.HasPrefix(got, []byte(fmt.Sprintf("HTTP/1.1 %d ", tt.status))) || !bytes.Contains(got, []byte(goErrorHeaders)) {
				t.Fatalf("net/http answered %q", got)
			}
			raw := converse(t, addr, tt.req)
			wantJSONError(t, raw, "HTTP/1.1", tt.status, tt.code, tt.message)
		})
	}
}

func TestABadRequestAfterAGoodOneOnAKeptAliveConnection(t *testing.T) {
	h := handler(t)
	good := "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
	bad := "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"
	plain := converse(t, serve(t, h, false), good, bad)
	if !bytes.HasSuffix(plain, []byte(go400)) {
		t.Fatalf("net/http answered %q", plain)
	}
	want := plain[:len(plain)-len(go400)]
	raw := converse(t, serve(t, h, true), good, bad)
	if !bytes.HasPrefix(raw, want) {
		t.Fatalf("first response changed:\n%q\nwant prefix\n%q", raw, want)
	}
	wantJSONError(t, raw[len(want):], "HTTP/1.1", 400, "bad_request", "invalid request: malformed HTTP request")
}

// wantJSONError checks that raw is exactly one JSON error response and then EOF.
func wantJSONError(t *testing.T, raw []byte, proto string, status int, code, message string) {
	t.Helper()
	statusLine := fmt.Sprintf("%s %d %s\r\n", proto, status, http.StatusText(status))
	if !bytes.HasPrefix(raw, []byte(statusLine)) {
		t.Fatalf("response %q does not start with %q", raw, statusLine)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Errorf("bytes after the response: %q", rest)
	}
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d", resp.StatusCode, status)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) || resp.ContentLength != int64(len(body)) {
		t.Errorf("Content-Length = %q, body is %d bytes", got, len(body))
	}
	// ReadResponse takes Connection: close out of the Header into Close.
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !resp.Close || !bytes.Contains(append(head, "\r\n"...), []byte("\r\nConnection: close\r\n")) {
		t.Errorf("no Connection: close in %q", head)
	}
	resp.Header.Set("Connection", "close")
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range resp.Header {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"Cache-Control", "Connection", "Content-Length", "Content-Type", "X-Content-Type-Options", "X-Request-Id"}; !slices.Equal(keys, want) {
		t.Errorf("headers = %v, want %v", keys, want)
	}
	var doc apierror.Body
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if doc.Error.Code != code || doc.Error.Message != message {
		t.Errorf("error = %+v, want code %q message %q", doc.Error, code, message)
	}
	if rid := resp.Header.Get("X-Request-Id"); len(rid) != 26 || doc.Error.RequestID != rid {
		t.Errorf("request ID: header %q, body %q; want the same new ULID in both", rid, doc.Error.RequestID)
	}
	if !strings.HasSuffix(string(body), "}\n") {
		t.Errorf("body %q does not end like apierror's", body)
	}
}

// TestNormalResponsesAreUntouched compares, byte for byte, what a server
// with and without the wrapper answers.
func TestNormalResponsesAreUntouched(t *testing.T) {
	h := handler(t)
	plain, wrapped := serve(t, h, false), serve(t, h, true)
	get := func(path string, close bool) string {
		r := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
		if close {
			r += "Connection: close\r\n"
		}
		return r + "\r\n"
	}
	echo := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
	tests := []struct {
		name string
		reqs []string
	}{
		{"one request", []string{get("/small", true)}},
		{"a keep-alive sequence of two requests", []string{get("/small", false), get("/small", true)}},
		{"a keep-alive sequence of four different requests", []string{echo, get("/stream", false), get("/file", false), get("/lookalike", true)}},
		{"pipelined requests", []string{get("/small", false) + echo + get("/small", true)}},
		{"HTTP/1.0", []string{"GET /small HTTP/1.0\r\n\r\n"}},
		{"a not found", []string{get("/nope", true)}},
		{"a handler's plain-text 400 with Connection: close", []string{get("/error", false)}},
		{"a body that starts like net/http's errors", []string{get("/lookalike", true)}},
		{"a large streamed response", []string{get("/stream", true)}},
		{"a large file (sendfile)", []string{get("/file", true)}},
		{"a chunked request body", []string{"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := converse(t, plain, tt.reqs...)
			got := converse(t, wrapped, tt.reqs...)
			if len(want) < len("HTTP/1.1 200 OK") {
				t.Fatalf("short answer %q", want)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("wrapped answer differs (%d bytes, want %d):\n%.300q\nwant\n%.300q", len(got), len(want), got, want)
			}
		})
	}
}

func TestPlainHTTPToATLSServer(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure")
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	// StartTLS puts the TLS listener over this one: net/http writes its
	// answer to a plain request to the connection under the tls.Conn.
	ts.Listener = Listener(ts.Listener)
	ts.StartTLS()
	defer ts.Close()

	raw := converse(t, ts.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantJSONError(t, raw, "HTTP/1.0", 400, "bad_request", "invalid request: client sent an HTTP request to an HTTPS server")

	// TLS itself still works.
	resp, err := ts.Client().Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "secure" {
		t.Fatalf("body = %q", b)
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name, in      string
		proto         string
		status        int
		code, message string
	}{
		{"431", go431, "HTTP/1.1", 431, "header_too_large", "invalid request: request header fields too large"},
		{"501", go501, "HTTP/1.1", 501, "not_implemented", "invalid request: unsupported transfer encoding"},
		{"400", go400, "HTTP/1.1", 400, "bad_request", "invalid request: malformed HTTP request"},
		{"505", goStatusError(505, "unsupported protocol version"), "HTTP/1.1", 505, "http_version_not_supported", "invalid request: unsupported protocol version"},
		{"missing Host", goStatusError(400, "missing required Host header"), "HTTP/1.1", 400, "bad_request", "invalid request: missing required Host header"},
		{"malformed Host", goStatusError(400, "malformed Host header"), "HTTP/1.1", 400, "bad_request", "invalid request: malformed Host header"},
		{"invalid header name", goStatusError(400, "invalid header name"), "HTTP/1.1", 400, "bad_request", "invalid request: invalid header name"},
		{"invalid header value", goStatusError(400, "invalid header value"), "HTTP/1.1", 400, "bad_request", "invalid request: invalid header value"},
		{"an unknown reason is not repeated", goStatusError(400, "bad thing <script>"), "HTTP/1.1", 400, "bad_request", "invalid request: bad request"},
		{"an unknown 5xx reason", goStatusError(505, "what"), "HTTP/1.1", 505, "http_version_not_supported", "invalid request: http version not supported"},
		{"https", goHTTPS, "HTTP/1.0", 400, "bad_request", "invalid request: client sent an HTTP request to an HTTPS server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := &conn{Conn: &fakeConn{w: &out}}
			n, err := c.Write([]byte(tt.in))
			if err != nil || n != len(tt.in) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(tt.in))
			}
			wantJSONError(t, out.Bytes(), tt.proto, tt.status, tt.code, tt.message)
		})
	}
}

func TestOtherWritesPassThrough(t *testing.T) {
	for _, in := range []string{
		"",
		"H",
		"hello",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK" + goErrorHeaders + "200 OK",
		"HTTP/1.1 400 Bad Request" + goErrorHeaders + "400 Bad Request ",
		"HTTP/1.1 400 Bad Request" + goErrorHeaders + "400 Bad Request\n",
		"HTTP/1.1 400 Bad Request" + goErrorHeaders,
		go400[:len(go400)-1],
		"HTTP/1.1 400 Bad Request" + goErrorHeaders[:len(goErrorHeaders)-2] + "X: y\r\n\r\n400 Bad Request",
		"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n\r\n400 Bad Request",
		"HTTP/1.0 400 Bad Request" + goErrorHeaders + "400 Bad Request",
		"HTTP/1.1 431 Request Header Fields Too Large" + goErrorHeaders + "400 Bad Request",
		"HTTP/1.1 501 Not Implemented" + goErrorHeaders + "501 Not Implemented",
		"HTTP/1.1 400 Not Found" + goErrorHeaders + "400 Not Found",
		"HTTP/1.1 400 Bad Request: x" + goErrorHeaders + "400 Bad Request: y",
		"HTTP/1.1 200 OK: x" + goErrorHeaders + "200 OK: x",
		"HTTP/1.1 4000 Bad Request" + goErrorHeaders + "4000 Bad Request",
		"HTTP/1.1 400 Bad Request: " + strings.Repeat("x", 200) + goErrorHeaders + "400 Bad Request: " + strings.Repeat("x", 200),
		goHTTPS + "x",
		goHTTPS[:len(goHTTPS)-1],
		"x" + go400,
		string(pattern(100 << 10)),
	} {
		var out bytes.Buffer
		c := &conn{Conn: &fakeConn{w: &out}}
		n, err := c.Write([]byte(in))
		if err != nil || n != len(in) {
			t.Fatalf("Write(%.60q) = %d, %v", in, n, err)
		}
		if out.String() != in {
			t.Errorf("Write(%.60q) wrote %.200q", in, out.String())
		}
	}
}

func TestNormalWritesDoNotAllocate(t *testing.T) {
	c := &conn{Conn: &fakeConn{w: io.Discard}}
	head := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: 01HX\r\nContent-Length: 2\r\n\r\n{}")
	body := pattern(4 << 10)
	if n := testing.AllocsPerRun(100, func() {
		c.Write(head)
		c.Write(body)
	}); n != 0 {
		t.Fatalf("%v allocations per normal write", n)
	}
}

func TestAWriteErrorIsReturned(t *testing.T) {
	boom := errors.New("boom")
	c := &conn{Conn: &fakeConn{w: io.Discard, err: boom}}
	if n, err := c.Write([]byte(go400)); n != 0 || err != boom {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

func TestReadFromAndCloseWriteReachTheConn(t *testing.T) {
	var out bytes.Buffer
	fc := &fakeConn{w: &out}
	c := &conn{Conn: &readFromConn{fakeConn: fc}}
	if n, err := c.ReadFrom(strings.NewReader("body")); n != 4 || err != nil || out.String() != "body" {
		t.Fatalf("ReadFrom = %d, %v; wrote %q", n, err, out.String())
	}
	if !c.Conn.(*readFromConn).readFrom {
		t.Error("ReadFrom did not reach the connection's ReadFrom")
	}
	if err := c.CloseWrite(); err != nil || !fc.closedWrite {
		t.Errorf("CloseWrite = %v, closed %v", err, fc.closedWrite)
	}

	// Without them: a plain copy, and an error.
	out.Reset()
	c = &conn{Conn: struct{ net.Conn }{fc}}
	if n, err := c.ReadFrom(strings.NewReader("body")); n != 4 || err != nil || out.String() != "body" {
		t.Fatalf("ReadFrom = %d, %v; wrote %q", n, err, out.String())
	}
	if err := c.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("CloseWrite = %v", err)
	}
}

type fakeConn struct {
	net.Conn    // nil: only Write and CloseWrite are called
	w           io.Writer
	err         error
	closedWrite bool
}

func (f *fakeConn) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	return f.w.Write(p)
}

func (f *fakeConn) CloseWrite() error {
	f.closedWrite = true
	return nil
}

type readFromConn struct {
	*fakeConn
	readFrom bool
}

func (r *readFromConn) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom = true
	return io.Copy(r.w, src)
}
