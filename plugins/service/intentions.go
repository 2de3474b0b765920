package service

import (
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// publishIntentions writes the services the call table lets call name as
// name's Consul intentions (allow each, deny everyone else), so that Consul's
// Intentions page and topology view show the mesh's call graph. What the
// servers enforce is the table itself, per endpoint; intentions are per
// service, so they show a summary of it. Writing them needs intentions:write
// on name, which each service's own ACL token has.
func publishIntentions(c *api.Client, name string, p svcauth.Policy) error {
	callers := p.Callers(name)
	if len(callers) == 0 {
		return nil // not in the table (tests' services)
	}
	entry := &api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions,
		Name: name,
		Meta: map[string]string{"managed-by": "marketmesh (plugins/svcauth call table)"},
	}
	for _, caller := range callers {
		entry.Sources = append(entry.Sources, &api.SourceIntention{Name: caller, Action: api.IntentionActionAllow,
			Description: "allowed by the marketmesh call table"})
	}
	entry.Sources = append(entry.Sources, &api.SourceIntention{Name: "*", Action: api.IntentionActionDeny,
		Description: "the call table denies everyone else"})
	if _, _, err := c.ConfigEntries().Set(entry, nil); err != nil {
		return fmt.Errorf("intentions of %s: %w", name, err)
	}
	return nil
}
