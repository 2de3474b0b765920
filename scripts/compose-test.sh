#!/usr/bin/env bash
# The docker deploy, tested: bring docker-compose.yml up under a unique
# project name on free ports, wait until every container is healthy and every
# service passes in Consul, smoke-test through the api, stop users and check
# the api degrades fast, start it and check recovery, restart and recreate it
# and check its data survived (named volume), then tear everything down, also
# on failure, and check nothing was left behind. Consul runs with ACLs
# (default deny): the stack's docker secrets (Consul tokens, keys) are made
# for this run in a temporary folder, and the test checks that Consul
# refuses a write without a token.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then dc=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then dc=(docker-compose)
else echo "compose-test: neither 'docker compose' nor 'docker-compose' is installed" >&2; exit 1; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
project="mmcompose$$"
API_PORT=$(free_port) CONSUL_UI_PORT=$(free_port)
secrets=$(mktemp -d)
export MARKETMESH_API_PUBLISH_HOST=127.0.0.1 MARKETMESH_CONSUL_PUBLISH_HOST=127.0.0.1 API_PORT CONSUL_UI_PORT \
	MARKETMESH_LOG_LEVEL=warn MARKETMESH_SECRETS_DIR="$secrets/compose"
api="http://127.0.0.1:$API_PORT" consul="http://127.0.0.1:$CONSUL_UI_PORT"
compose() { "${dc[@]}" -p "$project" -f docker-compose.yml "$@"; }
say() { printf '%s %s\n' "$(date +%T)" "$*"; }
fail() { say "FAIL: $*"; compose ps || true; compose logs --tail 30 || true; exit 1; }

leftovers() {
	{
		docker ps -aq --filter "label=com.docker.compose.project=$project"
		docker volume ls -q --filter "label=com.docker.compose.project=$project"
		docker network ls -q --filter "label=com.docker.compose.project=$project"
	} | wc -l
}
teardown() {
	compose down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
	local n; n=$(leftovers)
	rm -rf "$secrets"
	[ "$n" -eq 0 ] || { say "teardown left $n containers/volumes/networks of $project behind"; return 1; }
	say "torn down: no containers, volumes or networks of $project left"
}
trap teardown EXIT

# Wait until every container of the project reports healthy (meshsetup, a
# one-shot, has exited 0).
wait_healthy() { # timeout seconds
	local deadline=$((SECONDS + $1)) st
	while :; do
		st=$(compose ps -q | xargs -r docker inspect -f '{{.Name}}={{if .State.Health}}{{.State.Health.Status}}{{else if eq .State.Status "exited"}}exited-{{.State.ExitCode}}{{else}}{{.State.Status}}{{end}}')
		if [ -n "$st" ] && ! grep -v '_meshsetup_[0-9]*=exited-0$' <<<"$st" | grep -qv '=healthy$'; then return 0; fi
		[ $SECONDS -lt $deadline ] || fail "containers not healthy after $1 s: ${st//$'\n'/ }"
		sleep 0.5
	done
}
wait_passing() { # service
	for _ in $(seq 1 120); do
		[ "$(curl -fsS "$consul/v1/health/service/$1?passing=1" 2>/dev/null || echo '[]')" != "[]" ] && return 0
		sleep 0.5
	done
	fail "$1 not passing in Consul"
}
# call METHOD PATH [BODY] [TOKEN] → sets $status, $body, $secs
call() {
	local out
	out=$(curl -sS -X "$1" "$api$2" -H 'Content-Type: application/json' ${4:+-H "Authorization: Bearer $4"} \
		${3:+-d "$3"} -w '\n%{http_code} %{time_total}' || true)
	body=$(sed '$d' <<<"$out"); read -r status secs < <(tail -n1 <<<"$out")
}
expect() { # status, what
	[ "$status" = "$1" ] || fail "$2: got $status, want $1: $body"
}

t0=$(date +%s%N)
MARKETMESH_SECRETS_QUIET=1 scripts/compose-secrets.sh >/dev/null
say "up: project $project, api on $API_PORT, Consul UI on $CONSUL_UI_PORT"
compose up -d >/dev/null 2>&1 || fail "compose up"
wait_healthy 120
for s in users products publications images orders notifications api; do wait_passing "marketmesh.$s"; done
say "every container healthy and every service passing in Consul after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
mapfile -t running < <(compose ps -q | xargs -r docker inspect -f '{{if .State.Running}}{{.Id}}{{end}}' | grep .)
docker stats --no-stream --format '    {{.Name}}: {{.MemUsage}}' "${running[@]}"

# Consul is locked down: without a token nothing is written; a process's
# token writes nothing outside its own lock; the operator token does.
kv_put() { # token, key → HTTP status of a KV write
	curl -s -o /dev/null -w '%{http_code}' -X PUT ${1:+-H "X-Consul-Token: $1"} --data-binary '{"read_retries":1}' "$consul/v1/kv/$2"
}
st=$(kv_put "" marketmesh/config/rpc); [ "$st" = 403 ] || fail "anonymous KV write to Consul: got $st, want 403"
st=$(kv_put "" marketmesh/locks/marketmesh.users); [ "$st" = 403 ] || fail "anonymous write of a lock key: got $st, want 403"
st=$(kv_put "$(cat "$MARKETMESH_SECRETS_DIR/consul-users.token")" marketmesh/config/rpc)
[ "$st" = 403 ] || fail "users' token writing the live config: got $st, want 403"
st=$(curl -s -o /dev/null -w '%{http_code}' "$consul/v1/kv/marketmesh/config/rpc"); [ "$st" = 403 ] || fail "anonymous KV read: got $st, want 403"
st=$(kv_put "$(cat "$MARKETMESH_SECRETS_DIR/consul-management.token")" marketmesh/config/rpc)
[ "$st" = 200 ] || fail "operator token writing the live config: got $st, want 200"
say "Consul ACLs: anonymous and service tokens refused KV writes (403), anonymous reads health, the operator token writes"

email="compose-$$@example.com"
call POST /v1/auth/register "{\"email\":\"$email\",\"password\":\"correct horse\",\"name\":\"Compose\"}"; expect 201 register
call POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"correct horse\"}"; expect 200 login
token=$(grep -o '"token":"[^"]*"' <<<"$body" | cut -d'"' -f4)
call GET /v1/users/me "" "$token"; expect 200 me
grep -q "\"email\":\"$email\"" <<<"$body" || fail "me returned $body"
say "smoke test passed: register, login, me"

call POST /v1/products '{"name":"Compose Lamp","category":"home/lighting"}' "$token"; expect 201 "create product"
pid=$(grep -o '"id":"[^"]*"' <<<"$body" | head -1 | cut -d'"' -f4)
compose stop images >/dev/null 2>&1
call GET "/v1/products/$pid"; expect 200 "product page with images stopped"
{ grep -q '"partial":true' <<<"$body" && grep -q '"unavailable":\["images"\]' <<<"$body"; } || fail "product page not partial: $body"
say "images stopped: the product page is 200 partial, unavailable [images]"
compose start images >/dev/null 2>&1
wait_healthy 60

# Buying across containers: orders reserves at publications (a call only
# orders may make), charges the sandbox, and a pending charge is confirmed by
# the sandbox's signed webhook posted to the api (http://api:8080) and handed
# back to orders.
call POST /v1/publications "{\"product_id\":\"$pid\",\"title\":\"Compose Lamp, boxed\",\"price\":{\"amount\":4500,\"currency\":\"EUR\"},\"quantity\":5,\"condition\":\"new\"}" "$token"
expect 201 "create publication"
pub=$(grep -o '"id":"[^"]*"' <<<"$body" | head -1 | cut -d'"' -f4)
call POST /v1/auth/register "{\"email\":\"buyer-$email\",\"password\":\"correct horse\",\"name\":\"Buyer\"}"; expect 201 "register buyer"
call POST /v1/auth/login "{\"email\":\"buyer-$email\",\"password\":\"correct horse\"}"; expect 200 "login buyer"
buyer=$(grep -o '"token":"[^"]*"' <<<"$body" | cut -d'"' -f4)
order() { # card token
	echo "{\"items\":[{\"publication_id\":\"$pub\",\"quantity\":1}],\"payment\":{\"method\":\"card\",\"card_token\":\"$1\"},\"shipping_address\":{\"name\":\"B\",\"line1\":\"1 Rue\",\"city\":\"Paris\",\"postal_code\":\"75001\",\"country\":\"FR\"}}"
}
call POST /v1/orders "$(order tok_visa)" "$buyer"; expect 201 "order paid by card"
grep -q '"status":"paid"' <<<"$body" || fail "order not paid: $body"
call POST /v1/orders "$(order tok_pending)" "$buyer"; expect 202 "order pending payment"
oid=$(grep -o '"id":"[^"]*"' <<<"$body" | head -1 | cut -d'"' -f4)
for _ in $(seq 1 60); do
	call GET "/v1/orders/$oid" "" "$buyer"
	grep -q '"status":"paid"' <<<"$body" && break
	sleep 0.5
done
grep -q '"status":"paid"' <<<"$body" || fail "pending order not confirmed by the webhook: $body"
say "buying: an order paid at once, a pending one confirmed by the sandbox's signed webhook"

compose stop users >/dev/null 2>&1
for _ in 1 2 3 4 5; do
	call GET /v1/users/me "" "$token"; expect 503 "me with users stopped"
	grep -q '"code":"unavailable"' <<<"$body" || fail "503 without the error shape: $body"
	awk -v s="$secs" 'BEGIN { exit !(s < 0.5) }' || fail "503 took $secs s, want a fast answer"
done
say "users stopped: api answers 503 unavailable in ${secs}s"

compose start users >/dev/null 2>&1
wait_healthy 60
for _ in $(seq 1 60); do call GET /v1/users/me "" "$token"; [ "$status" = 200 ] && break; sleep 0.5; done
expect 200 "me after users started again"
say "users started: api recovered"

compose restart users >/dev/null 2>&1
wait_healthy 60
compose rm -sf users >/dev/null 2>&1
compose up -d users >/dev/null 2>&1
wait_healthy 60
for _ in $(seq 1 60); do call POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"correct horse\"}"; [ "$status" = 200 ] && break; sleep 0.5; done
expect 200 "login after users was restarted and recreated"
say "users restarted and recreated: the account survived in its named volume"

trap - EXIT
teardown
say "compose test passed"
