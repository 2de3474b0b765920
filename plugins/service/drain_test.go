package service

import (
	"testing"

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
