// Package saasfake fakes, at the wire level, the SaaS APIs the notifications
// service talks to: SendGrid's v3 mail/send, Google's OAuth 2.0 token
// endpoint (the JWT-bearer grant of service accounts) and FCM's HTTP v1
// messages:send. Each fake is a real HTTP server on 127.0.0.1 that speaks the
// provider's protocol closely enough for the real client libraries
// (sendgrid-go, firebase-admin-go) to be pointed at it: same paths, same
// authentication, same success and error bodies. Each records what it
// accepted, can wait for it, and answers with programmed failures on demand.
//
// It is an ordinary package, not a _test file, so that the tests of every
// module, the e2e suite and chaos runs can use it; production code must not.
package saasfake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Defaults of Start: the API key the SendGrid fake accepts and the Firebase
// project the FCM fake serves.
const (
	DefaultSendGridKey = "SG.saasfake.key"
	DefaultProject     = "marketmesh-test"
)

// Options configure Start.
type Options struct {
	SendGridKey string // the only API key the SendGrid fake accepts
	Project     string // the only Firebase project the FCM fake serves
}

// Option changes Options.
type Option func(*Options)

// SendGridKey sets the API key the SendGrid fake accepts.
func SendGridKey(key string) Option { return func(o *Options) { o.SendGridKey = key } }

// Project sets the Firebase project ID the FCM fake serves.
func Project(id string) Option { return func(o *Options) { o.Project = id } }

func newOptions(opts ...Option) Options {
	o := Options{SendGridKey: DefaultSendGridKey, Project: DefaultProject}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Fakes are the three fakes started together: point the SendGrid client at
// SendGrid.URL and the Firebase client at FCM.Endpoint() with a service
// account written by ServiceAccountFile (its token_uri is OAuth.TokenURL).
type Fakes struct {
	SendGrid *SendGrid
	OAuth    *OAuth
	FCM      *FCM

	// CredentialsFile is a service-account JSON file for the FCM project,
	// written by New; Start leaves it empty (see ServiceAccountFile).
	CredentialsFile string
}

// Start starts the three fakes, each on its own 127.0.0.1 port. Close stops them.
func Start(opts ...Option) (*Fakes, error) {
	o := newOptions(opts...)
	sg, err := NewSendGrid(o.SendGridKey)
	if err != nil {
		return nil, err
	}
	oauth, err := NewOAuth()
	if err != nil {
		sg.Close()
		return nil, err
	}
	fcm, err := NewFCM(o.Project, oauth)
	if err != nil {
		sg.Close()
		oauth.Close()
		return nil, err
	}
	return &Fakes{SendGrid: sg, OAuth: oauth, FCM: fcm}, nil
}

// New starts the fakes for one test, writes a service-account file for the
// FCM project into the test's temporary directory (CredentialsFile) and stops
// the fakes when the test ends.
func New(t testing.TB, opts ...Option) *Fakes {
	t.Helper()
	f, err := Start(opts...)
	if err != nil {
		t.Fatalf("saasfake: %v", err)
	}
	t.Cleanup(f.Close)
	if f.CredentialsFile, err = f.ServiceAccountFile(t.TempDir()); err != nil {
		t.Fatalf("saasfake: %v", err)
	}
	return f
}

// ServiceAccountFile writes into dir a new service account of the FCM
// project whose key the OAuth fake trusts, and returns the file's path.
func (f *Fakes) ServiceAccountFile(dir string) (string, error) {
	return f.OAuth.WriteServiceAccount(dir, f.FCM.Project)
}

// Close stops the three fakes.
func (f *Fakes) Close() {
	f.SendGrid.Close()
	f.FCM.Close()
	f.OAuth.Close()
}

// server is an HTTP server on a free 127.0.0.1 port.
type server struct {
	url  string
	srv  *http.Server
	done chan struct{}
}

func listen(name string, h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("saasfake: %s: listen: %w", name, err)
	}
	s := &server{
		url:  "http://" + ln.Addr().String(),
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // ErrServerClosed after close
	}()
	return s, nil
}

// close stops the server at once, dropping open connections, and waits for
// its accept loop to end. Calling it again does nothing.
func (s *server) close() {
	_ = s.srv.Close()
	<-s.done
}

// ErrTimeout is wrapped by the error of a Wait whose count was not reached in time.
var ErrTimeout = errors.New("saasfake: timed out waiting")

// record is a thread-safe list of what a fake accepted that can be waited on.
type record[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every add
}

func (r *record[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, v)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

func (r *record[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.items...)
}

func (r *record[T]) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = nil
}

// wait returns everything recorded once there are at least n items, or what
// there is with an error wrapping ErrTimeout after within.
func (r *record[T]) wait(what string, n int, within time.Duration) ([]T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		r.mu.Lock()
		if len(r.items) >= n {
			items := append([]T(nil), r.items...)
			r.mu.Unlock()
			return items, nil
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed, got := r.changed, len(r.items)
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return r.all(), fmt.Errorf("%w: %d %s after %v, want %d", ErrTimeout, got, what, within, n)
		}
	}
}

// queue holds programmed answers, each to be given a number of times, in order.
type queue[F any] struct {
	mu      sync.Mutex
	entries []queued[F]
}

type queued[F any] struct {
	answer F
	left   int
}

func (q *queue[F]) push(answer F, n int) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.entries = append(q.entries, queued[F]{answer, n})
}

// pop takes the next programmed answer, if any.
func (q *queue[F]) pop() (F, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero F
	if len(q.entries) == 0 {
		return zero, false
	}
	e := &q.entries[0]
	e.left--
	answer := e.answer
	if e.left == 0 {
		q.entries = q.entries[1:]
	}
	return answer, true
}

func (q *queue[F]) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.entries = nil
}

// counter counts requests.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) inc() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) reset() {
	c.mu.Lock()
	c.n = 0
	c.mu.Unlock()
}
