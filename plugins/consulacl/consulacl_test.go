package consulacl_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/consulacl"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// client talks to the agent with token ("" for none, whatever the
// environment says).
func client(t *testing.T, addr, token string) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Token, cfg.TokenFile = addr, token, ""
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantStatus fails unless err is Consul's answer code.
func wantStatus(t *testing.T, what string, err error, code int) {
	t.Helper()
	var se consul.StatusError
	if code == http.StatusOK {
		if err != nil {
			t.Fatalf("%s: %v, want it allowed", what, err)
		}
		return
	}
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("%s: err = %v, want status %d", what, err, code)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func apply(t *testing.T, s *consulacl.Setup) consulacl.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Apply(ctx)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func register(c *consul.Client, name string) error {
	return c.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: name + "-1", Name: name, Address: "127.0.0.1", Port: 9999,
	})
}

// The whole lock-down against a real agent with default deny, as make run
// and docker-compose run it: what each token may and may not do.
func TestApplyLocksConsulDown(t *testing.T) {
	management := uuid.NewString()
	agent := meshtest.Consul(t, meshtest.WithACL(management))
	dir := t.TempDir()
	files := consulacl.LocalFiles(dir)
	if err := os.WriteFile(files.Operator, []byte(management+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	setup := &consulacl.Setup{Address: agent.Addr, Files: files, KVPrefix: "marketmesh/config", Logf: t.Logf}
	if res := apply(t, setup); res.Disabled || res.Bootstrapped || res.Operator != management {
		t.Fatalf("Apply = %+v, want the operator file's token used", res)
	}
	for _, svc := range consulacl.Services {
		fi, err := os.Stat(files.ServiceToken(svc))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("token file of %s: %v, mode %v; want mode 0600", svc, err, fi.Mode())
		}
	}
	// Running it again changes nothing and fails nothing.
	usersSecret := readFile(t, files.ServiceToken("users"))
	apply(t, setup)
	if got := readFile(t, files.ServiceToken("users")); got != usersSecret {
		t.Fatalf("a second Apply changed the users token file")
	}

	op := client(t, agent.Addr, management)
	anon := client(t, agent.Addr, "")
	users := client(t, agent.Addr, usersSecret)
	orders := client(t, agent.Addr, readFile(t, files.ServiceToken("orders")))
	rpcKey := &consul.KVPair{Key: "marketmesh/config/rpc", Value: []byte(`{"read_retries":2}`)}

	t.Run("kv", func(t *testing.T) {
		_, err := anon.KV().Put(rpcKey, nil)
		wantStatus(t, "anonymous KV write", err, http.StatusForbidden)
		_, err = users.KV().Put(rpcKey, nil)
		wantStatus(t, "users' KV write to the live config", err, http.StatusForbidden)
		_, err = op.KV().Put(rpcKey, nil)
		wantStatus(t, "operator's KV write", err, http.StatusOK)
		pair, _, err := users.KV().Get(rpcKey.Key, nil)
		if err != nil || pair == nil || string(pair.Value) != string(rpcKey.Value) {
			t.Fatalf("users reading the live config: %v, %v", pair, err)
		}
		_, _, err = anon.KV().Get(rpcKey.Key, nil)
		wantStatus(t, "anonymous KV read", err, http.StatusForbidden)
		_, err = users.KV().Put(&consul.KVPair{Key: "marketmesh/locks/marketmesh.orders", Value: []byte("x")}, nil)
		wantStatus(t, "users writing orders' lock key", err, http.StatusForbidden)
	})

	t.Run("registration", func(t *testing.T) {
		wantStatus(t, "users registering marketmesh.users", register(users, "marketmesh.users"), http.StatusOK)
		wantStatus(t, "users registering marketmesh.orders", register(users, "marketmesh.orders"), http.StatusForbidden)
		wantStatus(t, "anonymous registering", register(anon, "marketmesh.users"), http.StatusForbidden)
		wantStatus(t, "orders registering marketmesh.orders", register(orders, "marketmesh.orders"), http.StatusOK)
		err := users.Agent().ServiceDeregister("marketmesh.orders-1")
		wantStatus(t, "users deregistering marketmesh.orders", err, http.StatusForbidden)
		err = anon.Agent().ServiceDeregister("marketmesh.users-1")
		wantStatus(t, "anonymous deregistering", err, http.StatusForbidden)
	})

	t.Run("anonymous reads the catalog and health", func(t *testing.T) {
		services, _, err := anon.Catalog().Services(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := services["marketmesh.orders"]; !ok {
			t.Fatalf("anonymous catalog = %v, want marketmesh.orders listed", services)
		}
		entries, _, err := anon.Health().Service("marketmesh.users", "", false, nil)
		if err != nil || len(entries) != 1 {
			t.Fatalf("anonymous health of marketmesh.users = %d entries, %v", len(entries), err)
		}
		nodes, _, err := anon.Catalog().Nodes(nil)
		if err != nil || len(nodes) == 0 {
			t.Fatalf("anonymous nodes = %v, %v", nodes, err)
		}
	})

	t.Run("single-instance lock", func(t *testing.T) {
		id, _, err := users.Session().Create(&consul.SessionEntry{TTL: "15s", Behavior: consul.SessionBehaviorRelease}, nil)
		if err != nil {
			t.Fatalf("users creating a session: %v", err)
		}
		ok, _, err := users.KV().Acquire(&consul.KVPair{Key: "marketmesh/locks/marketmesh.users", Value: []byte("{}"), Session: id}, nil)
		if err != nil || !ok {
			t.Fatalf("users taking its lock: %v, %v", ok, err)
		}
		_, _, err = anon.Session().Create(&consul.SessionEntry{TTL: "15s"}, nil)
		wantStatus(t, "anonymous creating a session", err, http.StatusForbidden)
		if _, _, err := client(t, agent.Addr, readFile(t, files.ServiceToken("api"))).Session().Create(&consul.SessionEntry{TTL: "15s"}, nil); err == nil {
			t.Fatal("the api (stateless, no lock) created a session")
		}
	})

	t.Run("intentions: its own only", func(t *testing.T) {
		entry := func(name string) *consul.ServiceIntentionsConfigEntry {
			return &consul.ServiceIntentionsConfigEntry{Kind: consul.ServiceIntentions, Name: name,
				Sources: []*consul.SourceIntention{{Name: "marketmesh.api", Action: consul.IntentionActionAllow}}}
		}
		if _, _, err := users.ConfigEntries().Set(entry("marketmesh.users"), nil); err != nil {
			t.Fatalf("users writing its own intentions: %v", err)
		}
		_, _, err := users.ConfigEntries().Set(entry("marketmesh.orders"), nil)
		wantStatus(t, "users writing orders' intentions", err, http.StatusForbidden)
		_, _, err = anon.ConfigEntries().Set(entry("marketmesh.users"), nil)
		wantStatus(t, "anonymous writing intentions", err, http.StatusForbidden)
	})

	t.Run("connect leaf certificate", func(t *testing.T) {
		if _, _, err := users.Agent().ConnectCALeaf("marketmesh.users", nil); err != nil {
			t.Fatalf("users' own leaf certificate: %v", err)
		}
		_, _, err := users.Agent().ConnectCALeaf("marketmesh.orders", nil)
		wantStatus(t, "users asking for orders' leaf certificate", err, http.StatusForbidden)
	})

	t.Run("operator does everything", func(t *testing.T) {
		wantStatus(t, "operator registering", register(op, "marketmesh.products"), http.StatusOK)
		wantStatus(t, "operator deregistering", op.Agent().ServiceDeregister("marketmesh.orders-1"), http.StatusOK)
		_, err := op.KV().Delete(rpcKey.Key, nil)
		wantStatus(t, "operator deleting a key", err, http.StatusOK)
		if _, _, err := op.ACL().PolicyList(nil); err != nil {
			t.Fatalf("operator listing policies: %v", err)
		}
	})

	t.Run("config and registry carry the token file", func(t *testing.T) {
		c := config.Consul{Address: agent.Addr, TokenFile: files.ServiceToken("publications"), CheckInterval: config.Duration(time.Second)}
		cfg, err := c.APIConfig()
		if err != nil || cfg.Token != readFile(t, c.TokenFile) || cfg.Address != agent.Addr {
			t.Fatalf("APIConfig = %+v, %v", cfg, err)
		}
		reg := service.NewRegistry(c, "", "")
		svc := &registry.Service{Name: "marketmesh.publications", Version: "test",
			Nodes: []*registry.Node{{Id: "marketmesh.publications-1", Address: "127.0.0.1:9103"}}}
		if err := reg.Register(svc); err != nil {
			t.Fatalf("registering publications with its token file: %v", err)
		}
		other := &registry.Service{Name: "marketmesh.images", Version: "test",
			Nodes: []*registry.Node{{Id: "marketmesh.images-1", Address: "127.0.0.1:9104"}}}
		if err := reg.Register(other); err == nil {
			t.Fatal("publications' registry registered marketmesh.images")
		}
		got, err := reg.GetService("marketmesh.users")
		if err != nil || len(got) == 0 {
			t.Fatalf("publications finding users: %v, %v", got, err)
		}
		kv, err := config.ConsulKV(c)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kv.Put(&consul.KVPair{Key: "marketmesh/config/rpc", Value: []byte("{}")}, nil)
		wantStatus(t, "publications' KV write", err, http.StatusForbidden)
	})

	t.Run("a forgetful agent gets the same tokens back", func(t *testing.T) {
		// A restarted dev agent forgets every token; Apply puts back the
		// same secrets, so running processes need no new file.
		self, _, err := users.ACL().TokenReadSelf(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.ACL().TokenDelete(self.AccessorID, nil); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, "users registering with a deleted token", register(users, "marketmesh.users"), http.StatusForbidden)
		apply(t, setup)
		wantStatus(t, "users registering after Apply again", register(users, "marketmesh.users"), http.StatusOK)
	})
}

// Without an operator file, Apply bootstraps ACLs and keeps the management
// token (mode 0600); with a file whose token the agent refuses, it fails
// naming the file.
func TestApplyBootstrapsOrNamesTheOperatorFile(t *testing.T) {
	management := uuid.NewString()
	agent := meshtest.Consul(t, meshtest.WithACL(management))
	files := consulacl.LocalFiles(t.TempDir())

	// initial_management already bootstrapped this agent: no bootstrap.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := (&consulacl.Setup{Address: agent.Addr, Files: files}).Apply(ctx)
	if !errors.Is(err, consulacl.ErrNoOperator) || !strings.Contains(err.Error(), files.Operator) {
		t.Fatalf("Apply without an operator file on a bootstrapped agent: %v", err)
	}
	if err := os.WriteFile(files.Operator, []byte(uuid.NewString()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = (&consulacl.Setup{Address: agent.Addr, Files: files}).Apply(ctx)
	if !errors.Is(err, consulacl.ErrNoOperator) || !strings.Contains(err.Error(), files.Operator) {
		t.Fatalf("Apply with a wrong operator token: %v", err)
	}
}

func TestBootstrap(t *testing.T) {
	// An agent with ACLs on and not bootstrapped (no initial_management;
	// default allow, so that meshtest sees its node come up without a token).
	agent := meshtest.Consul(t, func(c *testutil.TestServerConfig) {
		c.ACL.Enabled, c.ACL.DefaultPolicy = true, "allow"
	})
	files := consulacl.LocalFiles(filepath.Join(t.TempDir(), "consul"))
	res := apply(t, &consulacl.Setup{Address: agent.Addr, Files: files, KVPrefix: "marketmesh/config"})
	if !res.Bootstrapped || res.Operator == "" {
		t.Fatalf("Apply = %+v, want ACLs bootstrapped", res)
	}
	fi, err := os.Stat(files.Operator)
	if err != nil || fi.Mode().Perm() != 0o600 || readFile(t, files.Operator) != res.Operator {
		t.Fatalf("operator file: %v, %v", fi, err)
	}
	policies, _, err := client(t, agent.Addr, res.Operator).ACL().PolicyList(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(policies, func(p *consul.ACLPolicyListEntry) bool { return p.Name == "marketmesh-users" }) {
		t.Fatalf("policies after bootstrap: %v", policies)
	}
}

func TestServiceRules(t *testing.T) {
	users := consulacl.ServiceRules("users", "marketmesh/config")
	for _, want := range []string{
		`service "marketmesh.users" {` + "\n  policy     = \"write\"\n  intentions = \"write\"",
		`key_prefix "marketmesh/config/"`,
		`key "marketmesh/locks/marketmesh.users"`,
		`session_prefix ""`,
	} {
		if !strings.Contains(users, want) {
			t.Fatalf("users' rules lack %q:\n%s", want, users)
		}
	}
	if api := consulacl.ServiceRules("api", "marketmesh/config/"); strings.Contains(api, "session") || strings.Contains(api, "locks") {
		t.Fatalf("the api (stateless) may hold no lock:\n%s", api)
	}
}
