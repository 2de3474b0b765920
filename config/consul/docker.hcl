# The Consul server of docker-compose.yml: one node, its state (ACL tokens,
# KV, Connect CA) in the consul-data volume. The tokens it starts with
# (initial_management: the operator token; agent) come from the consul_acl
# docker secret (scripts/compose-secrets.sh); meshsetup creates the rest.
node_name        = "consul"
server           = true
bootstrap_expect = 1
data_dir         = "/consul/data"
client_addr      = "0.0.0.0"
log_level        = "warn"

ui_config {
  enabled = true
}

# Service identities: every process gets its Connect leaf certificate
# (which needs service:write on itself: its ACL token).
connect {
  enabled = true
}

# Default deny: a request without a token may do what the anonymous token's
# policy allows (read the catalog and health), nothing else. Tokens set
# through the API (the agent's) are kept in data_dir.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
