package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The precomputed healthz bodies are what writeJSON writes for the maps
// they replace.
func TestHealthzBodies(t *testing.T) {
	for body, status := range map[string]string{string(healthOK): "ok", string(healthStale): "stale instance"} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(map[string]string{"status": status}); err != nil {
			t.Fatal(err)
		}
		if body != want.String() {
			t.Errorf("body %q, writeJSON would write %q", body, want.String())
		}
	}
}
