// Package consulacl locks Consul down for the mesh: ACLs with default deny,
// one policy and one token per process, read-only anonymous access to the
// catalog (so the UI shows the mesh's health without a token), and a token
// for the Consul agent itself. cmd/meshsetup runs it for `make run` and
// docker-compose; its test runs it against a real agent.
//
// Every token's secret is chosen here, not by Consul: it is a file
// (<dir>/<svc>.token) made before the token exists in Consul, so the file can
// be handed to its process (a docker secret, CONSUL_HTTP_TOKEN_FILE) while
// nothing else ever writes where a process reads. Apply creates the token
// with that secret, or finds it, and is idempotent: run again after a dev
// agent restarted (which forgets every ACL), it puts back the same tokens,
// and running processes are authorized again without a restart.
package consulacl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	consul "github.com/hashicorp/consul/api"
)

// Services are the mesh's processes; each has its own policy and token.
var Services = []string{"users", "products", "publications", "images", "orders", "notifications", "api"}

// stateless processes take no single-instance lock (see service.Exclusive).
var stateless = map[string]bool{"api": true}

// Names of what Apply creates in Consul.
const (
	policyPrefix    = "marketmesh-"
	AnonymousPolicy = "marketmesh-anonymous"
	AgentPolicy     = "marketmesh-agent"
	// anonymousAccessor is the built-in token of requests that carry none.
	anonymousAccessor = "00000000-0000-0000-0000-000000000002"
)

// PolicyName is the name of service's policy, e.g. "marketmesh-users".
func PolicyName(service string) string { return policyPrefix + service }

// ServiceRules are the ACL rules of one marketmesh process (short name, as
// in Services): register itself (service:write, which also gets it its
// Connect leaf certificate), write its own intentions (the call table's
// callers of it, published for the UI; plugins/service), find the others (service and node read: the
// registry, health, the events relay's subscriber lookup), read the live
// configuration under kvPrefix, and, for stateful services, hold its
// single-instance lock (its lock key, and sessions on any node).
func ServiceRules(service, kvPrefix string) string {
	full := "marketmesh." + service
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: register itself (and get its Connect certificate), publish who may\n", full)
	b.WriteString("# call it (its intentions, from the call table), discover the others.\n")
	fmt.Fprintf(&b, "service %q {\n  policy     = \"write\"\n  intentions = \"write\"\n}\n", full)
	b.WriteString("service_prefix \"\" {\n  policy = \"read\"\n}\n")
	b.WriteString("node_prefix \"\" {\n  policy = \"read\"\n}\n")
	b.WriteString("# Live RPC values (config.Live), read only.\n")
	fmt.Fprintf(&b, "key_prefix %q {\n  policy = \"read\"\n}\n", strings.TrimSuffix(kvPrefix, "/")+"/")
	if !stateless[service] {
		b.WriteString("# The single-instance lock (service.Exclusive): its key, held by a session.\n")
		fmt.Fprintf(&b, "key %q {\n  policy = \"write\"\n}\n", "marketmesh/locks/"+full)
		b.WriteString("session_prefix \"\" {\n  policy = \"write\"\n}\n")
	}
	return b.String()
}

// AnonymousRules let requests without a token read the catalog and health
// (the UI, DNS, curl), and nothing else: no KV, no sessions, no writes.
const AnonymousRules = `# Requests without a token: the catalog and its health, read only (the UI, DNS).
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
`

// AgentRules are the Consul agent's own: register and update its node,
// sync the services and checks registered with it.
const AgentRules = `# The Consul agent itself: its node (anti-entropy, coordinates), services read.
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
`

// Files are where the tokens' secrets live.
type Files struct {
	// Operator holds a management token (Consul's initial_management, or
	// the result of bootstrapping ACLs). Apply bootstraps ACLs when it is
	// missing and writes it (mode 0600).
	Operator string
	// Agent holds the Consul agent's token; "" leaves the agent's token alone.
	Agent string
	// TokenDir holds <svc>.token for each of Services.
	TokenDir string
}

// LocalFiles is the layout under one directory (make run: .data/consul).
func LocalFiles(dir string) Files {
	return Files{
		Operator: filepath.Join(dir, "operator.token"),
		Agent:    filepath.Join(dir, "agent.token"),
		TokenDir: filepath.Join(dir, "tokens"),
	}
}

// ServiceToken is the token file of service.
func (f Files) ServiceToken(service string) string {
	return filepath.Join(f.TokenDir, service+".token")
}

// EnsureSecret returns the secret in path, first writing a new random one
// there (mode 0600, its folder 0700) if there is none. created says which.
func EnsureSecret(path string) (secret string, created bool, err error) {
	if s, err := readSecret(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return s, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, err
	}
	secret = uuid.NewString()
	// A private temporary file linked into place: the link fails if another
	// process made the file meanwhile, and nobody reads a half-written one.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return "", false, err
	}
	defer os.Remove(f.Name())
	_, werr := io.WriteString(f, secret+"\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", false, werr
	}
	if err := os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
		s, err := readSecret(path)
		return s, false, err
	} else if err != nil {
		return "", false, err
	}
	return secret, true, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// readSecret reads a token secret: a UUID, as Consul requires of a chosen one.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if !uuidRE.MatchString(s) {
		return "", fmt.Errorf("%s does not hold a token (a UUID)", path)
	}
	return s, nil
}

// Setup is one run against a Consul agent.
type Setup struct {
	// Address is the agent's HTTP address, host:port.
	Address string
	Files   Files
	// KVPrefix is where the live configuration lives (config.Consul.KVPrefix).
	KVPrefix string
	// Services defaults to Services.
	Services []string
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// Result says what Apply did.
type Result struct {
	// Disabled: the agent runs without ACLs; nothing was locked down.
	Disabled bool
	// Bootstrapped: ACLs were bootstrapped now, and the new management
	// token written to Files.Operator.
	Bootstrapped bool
	// Operator is the management token used.
	Operator string
}

// ErrNoOperator: ACLs are on and bootstrapped, and the operator file holds no
// management token valid there.
var ErrNoOperator = errors.New("no valid management token")

func (s *Setup) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *Setup) client(token string) (*consul.Client, error) {
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Token, cfg.TokenFile = s.Address, token, ""
	cfg.HttpClient = &http.Client{Timeout: 10 * time.Second}
	return consul.NewClient(cfg)
}

// WaitLeader waits until the agent answers and its cluster has a leader.
func (s *Setup) WaitLeader(ctx context.Context) error {
	c, err := s.client("")
	if err != nil {
		return err
	}
	var last error
	for {
		leader, err := c.Status().Leader()
		if err == nil && leader != "" {
			return nil
		}
		if err == nil {
			err = errors.New("no leader yet")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul at %s not ready: %w", s.Address, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Apply makes sure every token file exists, then that Consul has the
// policies and tokens. It waits (until ctx ends) for a management token in
// Files.Operator to become valid: Consul creates its initial_management
// token once it has elected itself leader.
func (s *Setup) Apply(ctx context.Context) (Result, error) {
	services := s.Services
	if services == nil {
		services = Services
	}
	secrets := map[string]string{}
	for _, svc := range services {
		secret, created, err := EnsureSecret(s.Files.ServiceToken(svc))
		if err != nil {
			return Result{}, fmt.Errorf("token file of %s: %w", svc, err)
		}
		if created {
			s.logf("created the token file %s", s.Files.ServiceToken(svc))
		}
		secrets[svc] = secret
	}
	var agentSecret string
	if s.Files.Agent != "" {
		var err error
		if agentSecret, _, err = EnsureSecret(s.Files.Agent); err != nil {
			return Result{}, fmt.Errorf("agent token file: %w", err)
		}
	}
	if err := s.WaitLeader(ctx); err != nil {
		return Result{}, err
	}
	res, op, err := s.operator(ctx)
	if err != nil || res.Disabled {
		return res, err
	}

	have, err := load(op)
	if err != nil {
		return res, err
	}
	for _, svc := range services {
		desc := "marketmesh." + svc + " (meshsetup)"
		if err := s.policy(op, have, PolicyName(svc), "marketmesh."+svc+": register itself, discover the mesh", ServiceRules(svc, s.KVPrefix)); err != nil {
			return res, err
		}
		if err := s.token(op, have, secrets[svc], desc, PolicyName(svc)); err != nil {
			return res, fmt.Errorf("token of %s: %w", svc, err)
		}
	}
	if err := s.policy(op, have, AnonymousPolicy, "requests without a token: catalog and health, read only", AnonymousRules); err != nil {
		return res, err
	}
	anon, _, err := op.ACL().TokenRead(anonymousAccessor, nil)
	if err != nil {
		return res, fmt.Errorf("anonymous token: %w", err)
	}
	if !linked(anon, AnonymousPolicy) {
		err := writeToken(op, tokenWrite{
			AccessorID:  anon.AccessorID,
			Description: anon.Description,
			Policies:    append(anon.Policies, &consul.ACLTokenPolicyLink{Name: AnonymousPolicy}),
		})
		if err != nil {
			return res, fmt.Errorf("anonymous token: %w", err)
		}
	}
	if agentSecret != "" {
		if err := s.policy(op, have, AgentPolicy, "the Consul agent: its node", AgentRules); err != nil {
			return res, err
		}
		if err := s.token(op, have, agentSecret, "Consul agent (meshsetup)", AgentPolicy); err != nil {
			return res, fmt.Errorf("agent token: %w", err)
		}
		if _, err := op.Agent().UpdateAgentACLToken(agentSecret, nil); err != nil {
			return res, fmt.Errorf("set the agent's token: %w", err)
		}
	}
	s.logf("consul ACLs in place at %s: default deny; policies and tokens for %s; anonymous reads the catalog",
		s.Address, strings.Join(services, ", "))
	return res, nil
}

// operator returns a client with a valid management token: from the
// operator file, or by bootstrapping ACLs when there is no file.
func (s *Setup) operator(ctx context.Context) (Result, *consul.Client, error) {
	secret, err := readSecret(s.Files.Operator)
	if errors.Is(err, os.ErrNotExist) {
		return s.bootstrap(ctx)
	}
	if err != nil {
		return Result{}, nil, err
	}
	op, err := s.client(secret)
	if err != nil {
		return Result{}, nil, err
	}
	var last error
	for {
		tok, _, err := op.ACL().TokenReadSelf(nil)
		switch {
		case err == nil && isManagement(tok):
			return Result{Operator: secret}, op, nil
		case err == nil:
			return Result{}, nil, fmt.Errorf("%w: the token in %s is not a management token", ErrNoOperator, s.Files.Operator)
		case aclDisabled(err):
			s.logf("ACLs are disabled on the agent at %s: nothing to lock down", s.Address)
			return Result{Disabled: true}, nil, nil
		}
		// Right after the leader's election Consul may not have created its
		// initial_management token yet: "ACL not found" for a moment.
		last = err
		select {
		case <-ctx.Done():
			return Result{}, nil, fmt.Errorf("%w: the token in %s is refused by the agent at %s (%v); "+
				"put a management token of that agent there", ErrNoOperator, s.Files.Operator, s.Address, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// bootstrap bootstraps ACLs and saves the management token (mode 0600).
func (s *Setup) bootstrap(ctx context.Context) (Result, *consul.Client, error) {
	anon, err := s.client("")
	if err != nil {
		return Result{}, nil, err
	}
	var tok *consul.ACLToken
	for {
		tok, _, err = anon.ACL().Bootstrap()
		if err == nil {
			break
		}
		if aclDisabled(err) {
			s.logf("ACLs are disabled on the agent at %s: nothing to lock down", s.Address)
			return Result{Disabled: true}, nil, nil
		}
		if strings.Contains(err.Error(), "no longer allowed") {
			return Result{}, nil, fmt.Errorf("%w: ACLs of the agent at %s were bootstrapped already and %s does not exist: "+
				"put a management token there", ErrNoOperator, s.Address, s.Files.Operator)
		}
		select { // "The ACL system is currently in legacy mode" or not ready yet
		case <-ctx.Done():
			return Result{}, nil, fmt.Errorf("bootstrap ACLs at %s: %w", s.Address, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := writeSecret(s.Files.Operator, tok.SecretID); err != nil {
		return Result{}, nil, fmt.Errorf("ACLs bootstrapped, but saving the management token %s failed: %w; "+
			"it is printed here once: %s", s.Files.Operator, err, tok.SecretID)
	}
	op, err := s.client(tok.SecretID)
	return Result{Bootstrapped: true, Operator: tok.SecretID}, op, err
}

func writeSecret(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(secret+"\n"), 0o600)
}

// policy creates the named policy or brings its rules up to date.
// existing is what Consul has, read once per Apply (reading each policy
// and token by name or secret would log an error in Consul for each one
// that does not exist yet).
type existing struct {
	policies map[string]string                    // name → ID
	tokens   map[string]*consul.ACLTokenListEntry // secret → token
}

func load(op *consul.Client) (*existing, error) {
	ps, _, err := op.ACL().PolicyList(nil)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	ts, _, err := op.ACL().TokenList(nil)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	e := &existing{policies: map[string]string{}, tokens: map[string]*consul.ACLTokenListEntry{}}
	for _, p := range ps {
		e.policies[p.Name] = p.ID
	}
	for _, t := range ts {
		e.tokens[t.SecretID] = t
	}
	return e, nil
}

// policy creates the named policy or brings its rules up to date.
func (s *Setup) policy(op *consul.Client, have *existing, name, desc, rules string) error {
	var err error
	if id, ok := have.policies[name]; !ok {
		_, _, err = op.ACL().PolicyCreate(&consul.ACLPolicy{Name: name, Description: desc, Rules: rules}, nil)
	} else {
		var p *consul.ACLPolicy
		if p, _, err = op.ACL().PolicyRead(id, nil); err == nil && (p.Rules != rules || p.Description != desc) {
			p.Rules, p.Description = rules, desc
			_, _, err = op.ACL().PolicyUpdate(p, nil)
		}
	}
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	return nil
}

// token makes sure a token with this secret exists and carries policy (and
// only it: no other policy, role or identity).
func (s *Setup) token(op *consul.Client, have *existing, secret, desc, policy string) error {
	want := tokenWrite{SecretID: secret, Description: desc, Policies: []*consul.ACLTokenPolicyLink{{Name: policy}}}
	t, ok := have.tokens[secret]
	if !ok {
		return writeToken(op, want)
	}
	if len(t.Policies) == 1 && t.Policies[0].Name == policy && len(t.Roles) == 0 && len(t.ServiceIdentities) == 0 &&
		len(t.NodeIdentities) == 0 && len(t.TemplatedPolicies) == 0 && t.Description == desc {
		return nil
	}
	want.AccessorID = t.AccessorID
	return writeToken(op, want)
}

// tokenWrite is the body of a token create or update. Not api.ACLToken:
// the api module's newer fields (Name) are refused as unknown by Consul
// 1.22 ("Token decoding failed"), so we send only what Consul has always
// known.
type tokenWrite struct {
	AccessorID  string `json:",omitempty"`
	SecretID    string `json:",omitempty"`
	Description string
	Policies    []*consul.ACLTokenPolicyLink
}

// writeToken creates the token (no AccessorID) or replaces it.
func writeToken(op *consul.Client, t tokenWrite) error {
	endpoint := "/v1/acl/token"
	if t.AccessorID != "" {
		endpoint += "/" + t.AccessorID
	}
	_, err := op.Raw().Write(endpoint, t, nil, nil)
	return err
}

func linked(tok *consul.ACLToken, policy string) bool {
	for _, p := range tok.Policies {
		if p.Name == policy {
			return true
		}
	}
	return false
}

func isManagement(tok *consul.ACLToken) bool {
	for _, p := range tok.Policies {
		if p.ID == "00000000-0000-0000-0000-000000000001" || p.Name == "global-management" {
			return true
		}
	}
	return false
}

// aclDisabled: the agent runs without ACLs.
func aclDisabled(err error) bool {
	return err != nil && strings.Contains(err.Error(), "ACL support disabled")
}
