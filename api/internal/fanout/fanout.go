// Package fanout runs the parts of an aggregated read in parallel. A core
// part's failure fails the whole answer; an optional part gets its own
// deadline and, when it fails or runs late, is reported as missing so the
// answer can still be given, marked partial.
package fanout

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"
)

// Group is one aggregated read.
type Group struct {
	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	coreErr error
	missing []string
}

// New starts a group bound to ctx (the request's context).
func New(ctx context.Context) *Group { return &Group{ctx: ctx} }

// run calls fn, turning a panic into an error: parts run on their own
// goroutines, where the HTTP server's recovery cannot reach, and a panic
// there would end the whole process.
func run(ctx context.Context, name string, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			slog.ErrorContext(ctx, "panic in aggregated read part", "part", name, "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("part %s panicked", name)
		}
	}()
	return fn(ctx)
}

// Core runs fn; its error becomes Wait's error (the first one wins).
func (g *Group) Core(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(g.ctx, name, fn); err != nil {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.coreErr == nil {
				g.coreErr = err
			}
		}
	}()
}

// Optional runs fn with its own timeout; a failure only marks name missing.
// fn must write its result only through variables the caller reads after
// Wait, and only when it returns nil.
func (g *Group) Optional(name string, timeout time.Duration, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		ctx, cancel := context.WithTimeout(g.ctx, timeout)
		defer cancel()
		if err := run(ctx, name, fn); err != nil {
			slog.WarnContext(g.ctx, "optional part unavailable", "part", name, "err", err)
			g.mu.Lock()
			defer g.mu.Unlock()
			g.missing = append(g.missing, name)
		}
	}()
}

// Wait waits for every part and returns the first core error.
func (g *Group) Wait() error {
	g.wg.Wait()
	return g.coreErr
}

// Missing reports whether any optional part failed, and which (sorted).
// Call after Wait.
func (g *Group) Missing() (bool, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	sort.Strings(g.missing)
	return len(g.missing) > 0, append([]string(nil), g.missing...)
}
