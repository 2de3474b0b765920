package meshtest

import "github.com/hashicorp/consul/sdk/testutil"

// Option changes the configuration of the agent Consul starts.
type Option func(*testutil.TestServerConfig)

// WithACL starts the agent with ACLs on and default deny, as `make run` and
// docker-compose run it, with management as its initial_management token.
// Agent.Client carries that token; a test's processes need their own
// (plugins/consulacl sets them up, with the management token in a file).
func WithACL(management string) Option {
	return func(c *testutil.TestServerConfig) {
		c.ACL.Enabled = true
		c.ACL.DefaultPolicy = "deny"
		c.ACL.Tokens.InitialManagement = management
	}
}
