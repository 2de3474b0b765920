#!/usr/bin/env bash
# Runs the whole mesh on this machine: a Consul dev agent (or the one already
# answering on 127.0.0.1:8500), every service, then the api. Ctrl-C stops
# everything in reverse order with SIGTERM, so services deregister cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(users products publications images orders)
export MARKETMESH_CONFIG="${MARKETMESH_CONFIG:-config/local.yaml}"
export MARKETMESH_DATA_DIR="${MARKETMESH_DATA_DIR:-.data}"
logs="$MARKETMESH_DATA_DIR/logs"
mkdir -p "$logs"
consul_addr="${CONSUL_HTTP_ADDR:-127.0.0.1:8500}"

pids=() names=()
stop_all() {
	trap - INT TERM EXIT
	echo
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null && echo "stopping ${names[i]}" || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	echo "stopped; data kept in $MARKETMESH_DATA_DIR (make clean removes it)"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # name, command...
	local name=$1; shift
	"$@" >>"$logs/$name.log" 2>&1 &
	pids+=($!) names+=("$name")
}

wait_for() { # what, url
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "$1 did not come up; see $logs" >&2
	exit 1
}

t0=$(date +%s%N)
if curl -fsS -o /dev/null "http://$consul_addr/v1/status/leader" 2>/dev/null; then
	echo "using the Consul agent already running at $consul_addr"
else
	consul=$(scripts/consul.sh)
	start consul "$consul" agent -dev -client 127.0.0.1 -bind 127.0.0.1 -ui -log-level warn
	wait_for consul "http://$consul_addr/v1/status/leader"
fi
for s in "${SERVICES[@]}"; do
	start "$s" "bin/$s"
done
start api bin/api
wait_for api "http://127.0.0.1:8080/healthz"
for s in "${SERVICES[@]}"; do
	wait_for "$s" "http://$consul_addr/v1/health/service/marketmesh.$s?passing=1&filter=Service.Service==marketmesh.$s"
	until [ "$(curl -fsS "http://$consul_addr/v1/health/service/marketmesh.$s?passing=1")" != "[]" ]; do sleep 0.1; done
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))

cat <<MSG

marketmesh is up (${ms} ms)
  API          http://127.0.0.1:8080      (try: curl http://127.0.0.1:8080/readyz)
  Swagger UI   http://127.0.0.1:8080/docs
  OpenAPI      http://127.0.0.1:8080/openapi.json
  Consul UI    http://$consul_addr/ui/
  logs         $logs/*.log
  data         $MARKETMESH_DATA_DIR
Ctrl-C stops everything.
MSG

# Exit (and stop the rest) as soon as any process dies.
wait -n "${pids[@]}" || true
echo "a process exited; stopping the mesh (see $logs)" >&2
