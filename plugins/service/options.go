package service

import (
	"time"

	"github.com/marketmesh/marketmesh/plugins/config"
)

// Options describe one service process.
type Options struct {
	Name    string // short name: "users" registers as "marketmesh.users"
	Version string
	Mesh    config.Mesh
	Server  config.Server
	// DrainDelay is the pause between deregistering and stopping, so callers'
	// registry caches learn the instance is gone before it stops answering.
	DrainDelay time.Duration
	// CheckPath is the ops path Consul probes (default /readyz).
	CheckPath string
}

// Option changes Options.
type Option func(*Options)

// Version sets the version reported in Consul metadata.
func Version(v string) Option { return func(o *Options) { o.Version = v } }

// DrainDelay sets the pause between deregistration and stop.
func DrainDelay(d time.Duration) Option { return func(o *Options) { o.DrainDelay = d } }

// CheckPath sets the HTTP path Consul probes on the ops address.
func CheckPath(p string) Option { return func(o *Options) { o.CheckPath = p } }

func newOptions(name string, mesh config.Mesh, srv config.Server, opts ...Option) Options {
	o := Options{Name: name, Version: "dev", Mesh: mesh, Server: srv, DrainDelay: mesh.DrainDelay.D(), CheckPath: "/readyz"}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
