package service

import (
	"time"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
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
	// Policy is the call table the server enforces (default svcauth.Mesh).
	Policy svcauth.Policy
}

// Option changes Options.
type Option func(*Options)

// Version sets the version reported in Consul metadata.
func Version(v string) Option { return func(o *Options) { o.Version = v } }

// DrainDelay sets the pause between deregistration and stop.
func DrainDelay(d time.Duration) Option { return func(o *Options) { o.DrainDelay = d } }

// CheckPath sets the HTTP path Consul probes on the ops address.
func CheckPath(p string) Option { return func(o *Options) { o.CheckPath = p } }

// Policy sets the call table the server enforces; tests of the plugins,
// whose services have made-up names, use svcauth.AllowAll.
func Policy(p svcauth.Policy) Option { return func(o *Options) { o.Policy = p } }

func newOptions(name string, mesh config.Mesh, srv config.Server, opts ...Option) Options {
	o := Options{Name: name, Version: "dev", Mesh: mesh, Server: srv, DrainDelay: mesh.DrainDelay.D(), CheckPath: "/readyz", Policy: svcauth.Mesh}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
