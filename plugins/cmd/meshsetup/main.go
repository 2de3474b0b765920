// Command meshsetup locks the mesh's Consul down (package consulacl): ACLs
// with default deny, one policy and token per process, read-only anonymous
// access to the catalog, and the agent's own token.
//
//	meshsetup -init -dir .data/consul -consul-config .data/consul/acl.hcl
//	    before Consul starts (make run): the operator (management) token,
//	    the agent's and every process's token file, and the Consul config
//	    file that gives the first two to Consul. Prints the operator token
//	    once, when it is created.
//	meshsetup -dir .data/consul [-watch 2s]
//	    waits for Consul, then makes sure the policies and tokens exist;
//	    with -watch, keeps doing so (a restarted dev agent forgets them).
//	meshsetup -operator-token-file F -agent-token-file F -token-dir D
//	    the same with the files elsewhere (docker-compose: /run/secrets).
//
// Without an operator token file, ACLs are bootstrapped and the management
// token written there (mode 0600).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/consulacl"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshsetup:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := os.Getenv("CONSUL_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8500"
	}
	var (
		dir          = flag.String("dir", ".data/consul", "where the token files live: operator.token, agent.token, tokens/<svc>.token")
		operator     = flag.String("operator-token-file", "", "the operator (management) token (default <dir>/operator.token)")
		agent        = flag.String("agent-token-file", "", "the Consul agent's token (default <dir>/agent.token; \"-\": leave the agent's token alone)")
		tokens       = flag.String("token-dir", "", "the processes' token files, <svc>.token (default <dir>/tokens)")
		consulAddr   = flag.String("consul", addr, "the Consul agent's HTTP address (CONSUL_HTTP_ADDR)")
		kvPrefix     = flag.String("kv-prefix", "marketmesh/config", "the live configuration's KV prefix: processes read it")
		initOnly     = flag.Bool("init", false, "only create the token files (and -consul-config), then exit: before Consul starts")
		consulConfig = flag.String("consul-config", "", "with -init: write a Consul config file (HCL, mode 0600) giving Consul the operator token as initial_management and the agent token")
		wait         = flag.Duration("wait", time.Minute, "how long to wait for Consul and a valid operator token")
		watch        = flag.Duration("watch", 0, "keep checking this often, and set everything up again when Consul forgot it (a restarted dev agent); 0: exit once done")
	)
	flag.Parse()
	files := consulacl.LocalFiles(*dir)
	if *operator != "" {
		files.Operator = *operator
	}
	if *tokens != "" {
		files.TokenDir = *tokens
	}
	switch *agent {
	case "":
	case "-":
		files.Agent = ""
	default:
		files.Agent = *agent
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	setup := &consulacl.Setup{
		Address:  *consulAddr,
		Files:    files,
		KVPrefix: *kvPrefix,
		Logf:     func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	}

	if *initOnly {
		return initFiles(files, *consulConfig)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	wctx, cancel := context.WithTimeout(ctx, *wait)
	res, err := setup.Apply(wctx)
	cancel()
	if err != nil {
		return err
	}
	if res.Bootstrapped {
		announce(res.Operator, files.Operator)
	}
	if *watch <= 0 || res.Disabled {
		return nil
	}
	return keep(ctx, setup, *watch, *wait)
}

// initFiles creates the token files, and the Consul config that hands the
// operator and agent tokens to Consul.
func initFiles(files consulacl.Files, consulConfig string) error {
	op, created, err := consulacl.EnsureSecret(files.Operator)
	if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	if created {
		announce(op, files.Operator)
	}
	var agent string
	if files.Agent != "" {
		if agent, _, err = consulacl.EnsureSecret(files.Agent); err != nil {
			return fmt.Errorf("agent token: %w", err)
		}
	}
	for _, svc := range consulacl.Services {
		if _, _, err := consulacl.EnsureSecret(files.ServiceToken(svc)); err != nil {
			return fmt.Errorf("token of %s: %w", svc, err)
		}
	}
	if consulConfig == "" {
		return nil
	}
	hcl := "# Written by meshsetup -init: the tokens Consul starts with. Secret: keep it private.\n" +
		"acl {\n  tokens {\n" + fmt.Sprintf("    initial_management = %q\n", op)
	if agent != "" {
		hcl += fmt.Sprintf("    agent = %q\n", agent)
	}
	hcl += "  }\n}\n"
	if err := os.MkdirAll(filepath.Dir(consulConfig), 0o700); err != nil {
		return err
	}
	tmp := consulConfig + ".tmp"
	if err := os.WriteFile(tmp, []byte(hcl), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, consulConfig)
}

func announce(token, path string) {
	fmt.Printf(`
Consul operator (management) token, shown once: %s
  kept in %s (mode 0600). Log into the Consul UI with it (Log in, top right),
  or: CONSUL_HTTP_TOKEN_FILE=%s consul ...

`, token, path, path)
}

// keep checks every interval that Consul still has the setup, and applies it
// again when not (a dev agent that restarted forgot every policy and token).
func keep(ctx context.Context, setup *consulacl.Setup, every, wait time.Duration) error {
	client, err := config.ConsulClient(config.Consul{Address: setup.Address, TokenFile: setup.Files.Operator})
	if err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p, _, err := client.ACL().PolicyReadByName(consulacl.AnonymousPolicy, (&consul.QueryOptions{}).WithContext(ctx))
		if err == nil && p != nil {
			continue
		}
		if err == nil {
			setup.Logf("consul forgot the ACL setup (restarted?): setting it up again")
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, err = setup.Apply(wctx)
		cancel()
		if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			setup.Logf("setting up ACLs again failed (will retry): %v", err)
		}
	}
}
