package config

import (
	"fmt"
	"os"
	"strings"

	consul "github.com/hashicorp/consul/api"
)

// APIConfig returns the configuration of a Consul API client for this
// process: the agent's address and the ACL token, Token or else the
// contents of TokenFile (read now, surrounding space trimmed). Every client
// of ours (registry, KV watch, single-instance lock) is built from it, so one
// token file gives a process its identity in Consul. An unreadable or empty
// token file is an error naming the file: without its token a process would
// be anonymous and, under default-deny ACLs, refused everything it writes.
func (c Consul) APIConfig() (*consul.Config, error) {
	cfg := consul.DefaultConfig()
	if c.Address != "" {
		cfg.Address = c.Address
	}
	token, err := c.token()
	if err != nil {
		return nil, err
	}
	// Explicit, so that neither Consul's own environment variables nor a
	// token file read again later disagree with what this process loaded.
	cfg.Token, cfg.TokenFile = token, ""
	return cfg, nil
}

func (c Consul) token() (string, error) {
	if t := strings.TrimSpace(c.Token); t != "" || c.TokenFile == "" {
		return t, nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("consul token: CONSUL_HTTP_TOKEN_FILE: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("consul token: CONSUL_HTTP_TOKEN_FILE %s is empty", c.TokenFile)
	}
	return t, nil
}

// ConsulClient returns a Consul API client configured by c.APIConfig.
func ConsulClient(c Consul) (*consul.Client, error) {
	cfg, err := c.APIConfig()
	if err != nil {
		return nil, err
	}
	client, err := consul.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client %s: %w", cfg.Address, err)
	}
	return client, nil
}
