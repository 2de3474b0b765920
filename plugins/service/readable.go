package service

import (
	"maps"

	"go-micro.dev/v4/registry"
)

// readableRegistry shapes what the Consul registry plugin is given to
// register, for the operators reading Consul. The plugin cannot be told which
// tags to write: it hex-encodes every endpoint ("e-…"), every node metadata
// pair ("t-…") and the version ("v-…") into tags, and copies node metadata,
// as is, into the service Meta. Discovery decodes the version and node
// metadata (address keys, subscriptions, protocol) from those tags, so they
// stay; endpoints are dropped, since nothing selects by endpoint (calls need
// only a node's address and metadata) and they made one long tag per
// handler method. The version is added to node metadata, so Meta reads
// version=…, protocol=grpc, … in Consul's UI.
type readableRegistry struct{ registry.Registry }

func (r readableRegistry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	return r.Registry.Register(readable(s), opts...)
}

// readable returns a copy of s without endpoints and with the version in
// each node's metadata; s is not changed (go-micro keeps and reuses it).
func readable(s *registry.Service) *registry.Service {
	c := *s
	c.Endpoints = nil
	c.Nodes = make([]*registry.Node, len(s.Nodes))
	for i, n := range s.Nodes {
		node := *n
		node.Metadata = maps.Clone(n.Metadata)
		if node.Metadata == nil {
			node.Metadata = map[string]string{}
		}
		if _, ok := node.Metadata["version"]; !ok && s.Version != "" {
			node.Metadata["version"] = s.Version
		}
		c.Nodes[i] = &node
	}
	return &c
}
