package service

import (
	"strings"
	"sync"
	"testing"
	"time"

	"go-micro.dev/v4/registry"
)

// countingRegistry counts what reaches the real registry.
type countingRegistry struct {
	registry.Registry
	registers, deregisters int
}

func (c *countingRegistry) Register(*registry.Service, ...registry.RegisterOption) error {
	c.registers++
	return nil
}

func (c *countingRegistry) Deregister(*registry.Service, ...registry.DeregisterOption) error {
	c.deregisters++
	return nil
}

func TestOnceDrainingTheInstanceStaysDeregistered(t *testing.T) {
	inner := &countingRegistry{}
	d := &drainingRegistry{Registry: inner}
	s := &registry.Service{Name: "marketmesh.x"}
	_ = d.Register(s)
	_ = d.Register(s) // the re-register timer
	_ = d.Deregister(s)
	_ = d.Register(s)   // a timer tick during the drain delay
	_ = d.Deregister(s) // server.Stop deregisters again
	if inner.registers != 2 || inner.deregisters != 1 {
		t.Fatalf("registers=%d deregisters=%d reached Consul, want 2 and 1", inner.registers, inner.deregisters)
	}
}

// slowRegistry holds each Register until release is closed and records, in
// order, what reached it.
type slowRegistry struct {
	registry.Registry
	entered, release chan struct{}
	mu               sync.Mutex
	ops              []string
}

func (s *slowRegistry) record(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops = append(s.ops, op)
}

func (s *slowRegistry) Register(*registry.Service, ...registry.RegisterOption) error {
	s.entered <- struct{}{}
	<-s.release
	s.record("register")
	return nil
}

func (s *slowRegistry) Deregister(*registry.Service, ...registry.DeregisterOption) error {
	s.record("deregister")
	return nil
}

func TestARegisterInFlightWhenDrainingStartsCannotOutliveTheDeregister(t *testing.T) {
	inner := &slowRegistry{entered: make(chan struct{}), release: make(chan struct{})}
	d := &drainingRegistry{Registry: inner}
	s := &registry.Service{Name: "marketmesh.x"}
	registered := make(chan struct{})
	go func() {
		defer close(registered)
		_ = d.Register(s) // the re-register timer fired just before shutdown
	}()
	<-inner.entered // its PUT is on the way to Consul
	deregistered := make(chan struct{})
	go func() {
		defer close(deregistered)
		_ = d.Deregister(s)
	}()
	// Give the deregister every chance to overtake the register in flight.
	select {
	case <-deregistered:
	case <-time.After(200 * time.Millisecond):
	}
	close(inner.release)
	<-registered
	<-deregistered
	if got := strings.Join(inner.ops, ","); got != "register,deregister" {
		t.Fatalf("Consul saw %s: the instance is registered after shutdown began", got)
	}
}
