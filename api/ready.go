package main

import (
	"context"
	"net/http"

	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/meshtls"
)

type readyBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readiness reports whether the api holds its certificate, the registry answers and every backing service
// has at least one passing instance. It asks Consul once per service: the
// ops listener serves it as /readyz, cached (api/internal/ops), never on
// the public port.
func readiness(reg registry.Registry, id *meshtls.Identity, services ...string) func(context.Context) (int, any) {
	return func(ctx context.Context) (int, any) {
		body := readyBody{Status: "ready", Checks: map[string]string{}}
		status := http.StatusOK
		fail := func(name, msg string) {
			body.Checks[name] = msg
			body.Status, status = "unready", http.StatusServiceUnavailable
		}
		if id.Ready() {
			body.Checks["identity"] = "ok"
		} else {
			fail("identity", "no certificate from Consul Connect yet")
		}
		if _, err := reg.ListServices(); err != nil {
			fail("registry", "unreachable: "+err.Error())
			return status, body
		}
		body.Checks["registry"] = "ok"
		for _, s := range services {
			// The Consul registry returns only instances whose checks pass.
			nodes := 0
			if found, err := reg.GetService(s); err == nil {
				for _, v := range found {
					nodes += len(v.Nodes)
				}
			}
			if nodes == 0 {
				fail(s, "no passing instance")
				continue
			}
			body.Checks[s] = "ok"
		}
		return status, body
	}
}
