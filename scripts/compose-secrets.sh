#!/usr/bin/env bash
# Makes the secrets docker-compose.yml hands to its containers (docker
# secrets, one file each), once: files that exist are kept, so running it
# again changes nothing. `make compose-secrets` runs it; run it before the
# first `docker-compose up`. Each container gets only its own files:
#   consul-acl.hcl            consul: its initial_management (operator) and agent tokens
#   consul-management.token   meshsetup: the operator token (it is printed once, below)
#   consul-agent.token        meshsetup: the Consul agent's token
#   consul-<svc>.token        <svc> and meshsetup: the process's Consul ACL token
#   auth-jwt.key              api: the Ed25519 seed its JWTs are signed with
#   users-bank.key            users: the AES-256 key of bank account numbers
#   payments-webhook.key      orders: the sandbox's webhook HMAC secret
# A key already in the environment (AUTH_JWT_KEY, USERS_BANK_KEY,
# PAYMENTS_WEBHOOK_SECRET, base64) is written instead of a random one.
#
# The folder is private (0700). The files in it are 0644: compose bind-mounts
# a secret file as it is, and the containers run as user 65532, which could
# not read a 0600 file of yours; the folder keeps other users of this
# machine out.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${MARKETMESH_SECRETS_DIR:-.data/compose/secrets}"
services=(users products publications images orders notifications api)
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

uuid() { cat /proc/sys/kernel/random/uuid; }
key() { head -c 32 /dev/urandom | base64; }

made=()
put() { # file, value: writes the file unless it exists
	[ -s "$dir/$1" ] && return 0
	printf '%s\n' "$2" >"$dir/$1.tmp"
	chmod 644 "$dir/$1.tmp"
	mv "$dir/$1.tmp" "$dir/$1"
	made+=("$1")
}

put consul-management.token "$(uuid)"
put consul-agent.token "$(uuid)"
for s in "${services[@]}"; do put "consul-$s.token" "$(uuid)"; done
put auth-jwt.key "${AUTH_JWT_KEY:-$(key)}"
put users-bank.key "${USERS_BANK_KEY:-$(key)}"
put payments-webhook.key "${PAYMENTS_WEBHOOK_SECRET:-$(key)}"

# Consul's own config: written from the two token files every time.
management=$(tr -d '[:space:]' <"$dir/consul-management.token")
agent=$(tr -d '[:space:]' <"$dir/consul-agent.token")
cat >"$dir/consul-acl.hcl.tmp" <<HCL
# Written by scripts/compose-secrets.sh: the tokens Consul starts with.
acl {
  tokens {
    initial_management = "$management"
    agent = "$agent"
  }
}
HCL
chmod 644 "$dir/consul-acl.hcl.tmp"
mv "$dir/consul-acl.hcl.tmp" "$dir/consul-acl.hcl"

if [ "${#made[@]}" -eq 0 ]; then
	echo "compose secrets: all present in $dir"
	exit 0
fi
echo "compose secrets: created ${made[*]} in $dir"
if [[ " ${made[*]} " == *" consul-management.token "* ]] && [ -z "${MARKETMESH_SECRETS_QUIET:-}" ]; then
	cat <<MSG

Consul operator (management) token, shown once: $management
  kept in $dir/consul-management.token. Log into the Consul UI with it
  (Log in, top right), or: CONSUL_HTTP_TOKEN_FILE=$dir/consul-management.token consul ...
MSG
fi
