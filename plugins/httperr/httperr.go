// Package httperr makes the error responses that net/http's server writes on
// its own, before any handler runs, come out in the api's JSON error shape
// (apierror.Body) instead of plain text.
//
// When (*http.conn).serve cannot read a request (an invalid request line or
// URI, a malformed or control-byte header line, headers over MaxHeaderBytes,
// an unsupported Transfer-Encoding, an unsupported HTTP version, a missing or
// malformed Host header) it formats a whole plain-text response into a single
// Write straight to the net.Conn, bypassing its buffered writer, and closes
// the connection. http.Server has no hook for these, so Listener wraps the
// accepted connections: a Write that is exactly one of those responses is
// replaced by the JSON one (same status code and reason), and every other
// Write goes through untouched and uncopied after a prefix check.
//
// The responses recognised (Go 1.26 net/http, server.go), with errorHeaders
// = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n":
//
//	"HTTP/1.1 431 Request Header Fields Too Large" + errorHeaders + "431 Request Header Fields Too Large"
//	"HTTP/1.1 501 Not Implemented" + errorHeaders + "Unsupported transfer encoding"
//	"HTTP/1.1 %d %s: %s" + errorHeaders + "%d %s: %s"   (statusError: 400 with a reason, 505)
//	"HTTP/1.1 400 Bad Request" + errorHeaders + "400 Bad Request"
//	"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
//
// The last one is written by a TLS server to the connection under the
// tls.Conn, so it is rewritten when the TLS listener wraps this one.
//
// Only a Write that is one of these responses whole is rewritten: a handler
// whose output reached the connection as exactly such bytes in one write
// would be too, but no handler of the api writes plain text like that.
package httperr

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/oklog/ulid/v2"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/marketmesh/marketmesh/plugins/apierror"
)

// Listener returns ln with its accepted connections wrapped so that
// net/http's own plain-text error responses are written as JSON.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{c}, nil
}

// conn rewrites net/http's error responses in Write. It keeps the methods
// net/http looks for on a *net.TCPConn: ReadFrom (sendfile and splice for
// response bodies) and CloseWrite (the FIN after a 431).
type conn struct{ net.Conn }

const (
	// errorHeaders is net/http's header block for its own error responses.
	errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	prefix11     = "HTTP/1.1 "
	// httpsErr is the whole answer of a TLS server to a plain HTTP request.
	httpsErr = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
	// maxStatusLine bounds the status line searched for errorHeaders: net/http's
	// are under 80 bytes, and a longer one is a normal response's.
	maxStatusLine = 128
)

func (c *conn) Write(p []byte) (int, error) {
	// The fast path: a normal write does not start with "HTTP/1." (a body or a
	// chunk) or has a header after its status line other than errorHeaders'.
	if len(p) < len(httpsErr) || p[0] != 'H' || string(p[:7]) != "HTTP/1." {
		return c.Conn.Write(p)
	}
	resp := rewrite(p)
	if resp == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(resp); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrom hands response bodies to the wrapped connection's ReadFrom.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite shuts down the writing side of the wrapped connection.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// rewrite returns the JSON response for p if p is exactly one of net/http's
// own error responses, else nil.
func rewrite(p []byte) []byte {
	if string(p) == httpsErr {
		return respond("HTTP/1.0 ", http.StatusBadRequest, "invalid request: client sent an HTTP request to an HTTPS server")
	}
	if string(p[:len(prefix11)]) != prefix11 {
		return nil
	}
	rest := p[len(prefix11):]
	end := bytes.IndexByte(rest[:min(len(rest), maxStatusLine)], '\r')
	if end < 0 || len(rest)-end < len(errorHeaders) || string(rest[end:end+len(errorHeaders)]) != errorHeaders {
		return nil
	}
	status, body := string(rest[:end]), string(rest[end+len(errorHeaders):])
	code, reason, ok := parseStatus(status)
	if !ok {
		return nil
	}
	var msg string
	switch {
	case code == http.StatusRequestHeaderFieldsTooLarge && reason == "" && body == status:
		msg = "request header fields too large"
	case code == http.StatusNotImplemented && reason == "" && body == "Unsupported transfer encoding":
		msg = "unsupported transfer encoding"
	case code == http.StatusBadRequest && reason == "" && body == status:
		// Every parse error without a statusError of its own: the request
		// line, the URI, the version, a header line, Content-Length.
		msg = "malformed HTTP request"
	case reason != "" && body == status:
		// A statusError: its text is a constant in net/http, but only the
		// known ones are repeated, so no request bytes are ever echoed.
		msg = strings.ToLower(http.StatusText(code))
		if knownReasons[reason] {
			msg = reason
		}
	default:
		return nil
	}
	return respond(prefix11, code, "invalid request: "+msg)
}

// knownReasons are the statusError texts of Go 1.26's (*conn).readRequest.
var knownReasons = map[string]bool{
	"unsupported protocol version": true,
	"missing required Host header": true,
	"malformed Host header":        true,
	"invalid header name":          true,
	"invalid header value":         true,
}

// parseStatus splits "431 Request Header Fields Too Large" or
// "400 Bad Request: malformed Host header" into the code and the statusError
// reason ("" if none), checking that the text is the code's StatusText.
func parseStatus(s string) (code int, reason string, ok bool) {
	if len(s) < 5 || s[3] != ' ' {
		return 0, "", false
	}
	code, err := strconv.Atoi(s[:3])
	if err != nil || code < 400 || code > 599 {
		return 0, "", false
	}
	text := http.StatusText(code)
	rest := s[4:]
	if rest == text {
		return code, "", true
	}
	if len(rest) > len(text)+2 && rest[:len(text)] == text && rest[len(text):len(text)+2] == ": " {
		return code, rest[len(text)+2:], true
	}
	return 0, "", false
}

// codes are the machine codes of the statuses net/http answers itself that
// apierror.Code has no name for.
var codes = map[int]string{
	http.StatusRequestHeaderFieldsTooLarge: "header_too_large",
	http.StatusNotImplemented:              "not_implemented",
	http.StatusHTTPVersionNotSupported:     "http_version_not_supported",
}

// respond builds a whole JSON error response: the error document as the api's
// handlers write it (apierror), with a request ID of its own (no request was
// read, so none was echoed) in the body and in X-Request-Id as on every
// answer of the api, the headers they set on errors, and Connection: close,
// as net/http closes the connection after it.
func respond(proto string, status int, msg string) []byte {
	code, ok := codes[status]
	if !ok {
		code = apierror.Code(status)
	}
	id := ulid.Make().String()
	doc, err := json.Marshal(apierror.Body{Error: apierror.Detail{Code: code, Message: msg, RequestID: id}})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	doc = append(doc, '\n') // as json.Encoder in apierror
	var b bytes.Buffer
	b.Grow(192 + len(doc))
	b.WriteString(proto)
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(status))
	b.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(doc)))
	b.WriteString("\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: ")
	b.WriteString(id)
	b.WriteString("\r\nConnection: close\r\n\r\n")
	b.Write(doc)
	return b.Bytes()
}
