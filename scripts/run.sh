#!/usr/bin/env bash
# Runs the whole mesh on this machine: a Consul dev agent (or the one already
# answering on 127.0.0.1:8500), every service, then the api. Ctrl-C stops
# everything in reverse order with SIGTERM, so services deregister cleanly.
#
# Once the mesh is up, run.sh supervises what it started: a process that exits
# (any status, a crash, a kill -9) is started again while the others keep
# serving. Backoff rule, per process: it is restarted 1 s after its first
# exit, and each further exit doubles the delay (2 s, 4 s, ...) up to 30 s; a
# process that had stayed up for 60 s or more before exiting starts over at
# 1 s. An external Consul (one already answering) is never touched.
#
# Consul runs with ACLs, default deny (README "Consul ACLs"): bin/meshsetup
# makes the operator token and each process's token under
# $MARKETMESH_DATA_DIR/consul, and Consul's policies and tokens; each process
# gets its own file (CONSUL_HTTP_TOKEN_FILE). A meshsetup kept running puts
# them back if the dev agent restarts (it forgets every ACL).
#
# Published: the api on MARKETMESH_API_PUBLISH_HOST and Consul (HTTP API and
# UI) on MARKETMESH_CONSUL_PUBLISH_HOST, both 127.0.0.1 unless set (0.0.0.0:
# every interface).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(users products publications images orders notifications)
export MARKETMESH_CONFIG="${MARKETMESH_CONFIG:-config/local.yaml}"
export MARKETMESH_DATA_DIR="${MARKETMESH_DATA_DIR:-.data}"
logs="$MARKETMESH_DATA_DIR/logs"
mkdir -p "$logs"
consul_addr="${CONSUL_HTTP_ADDR:-127.0.0.1:8500}"
consul_dir="$MARKETMESH_DATA_DIR/consul"
consul_host="${MARKETMESH_CONSUL_PUBLISH_HOST:-127.0.0.1}"
api_host="${MARKETMESH_API_PUBLISH_HOST:-127.0.0.1}"
# Where this machine reaches the api; a specific address also binds it.
api_probe=127.0.0.1
if [ -n "${MARKETMESH_API_PUBLISH_HOST:-}" ]; then
	export API_ADDRESS="${API_ADDRESS:-$api_host:8080}"
	if [ "$api_host" != 0.0.0.0 ] && [ "$api_host" != 127.0.0.1 ]; then
		api_probe=$api_host
		export PAYMENTS_WEBHOOK_URL="${PAYMENTS_WEBHOOK_URL:-http://$api_host:8080/v1/payments/webhook}"
	fi
fi
# Consul always answers on 127.0.0.1 (the processes use it), and also on
# the publish host when that is another address.
consul_client=$consul_host
if [ "$consul_host" != 0.0.0.0 ] && [ "$consul_host" != 127.0.0.1 ]; then
	consul_client="127.0.0.1 $consul_host"
fi
setup=(bin/meshsetup -dir "$consul_dir" -consul "$consul_addr" -kv-prefix "${MARKETMESH_KV_PREFIX:-marketmesh/config}")

backoff_first=1 backoff_max=30 stable_after=60 # seconds; see the rule above

# Per process, in start order: name, command line (words joined by $'\x1f'),
# pid (empty while it waits to be restarted), when it was started and when
# it is due to be started again (ms), and the delay before its next restart.
names=() cmds=() pids=() started=() due=() delays=()
stop_all() {
	local i p
	trap - INT TERM EXIT
	echo
	# Processes waiting to be restarted have no pid: they stay down.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		[ -n "${pids[i]}" ] || continue
		if kill -TERM "${pids[i]}" 2>/dev/null; then echo "stopping ${names[i]}"; fi
		wait "${pids[i]}" 2>/dev/null || true
	done
	# A restart that the signal interrupted before its pid was recorded.
	for p in $(jobs -p); do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	echo "stopped; data kept in $MARKETMESH_DATA_DIR (make clean removes it)"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

now_ms() { # sets now to the time in milliseconds (no fork)
	now=${EPOCHREALTIME//[!0-9]/}
	now=$((10#$now / 1000))
}

spawn() { # index: starts process i again from its recorded command line
	local i=$1 argv
	IFS=$'\x1f' read -r -a argv <<<"${cmds[i]}"
	"${argv[@]}" >>"$logs/${names[i]}.log" 2>&1 3>&- &
	pids[i]=$!
	now_ms
	started[i]=$now due[i]=''
}

start() { # name, command...
	local name=$1 i=${#names[@]}; shift
	names[i]=$name delays[i]=$backoff_first
	printf -v "cmds[$i]" '%s\x1f' "$@"
	spawn "$i"
}

# One pass of supervision: notes the processes that exited and starts again
# the ones whose delay is over.
supervise() {
	local i st why delay
	now_ms
	for i in "${!names[@]}"; do
		if [ -n "${pids[i]}" ]; then
			kill -0 "${pids[i]}" 2>/dev/null && continue
			st=0
			wait "${pids[i]}" 2>/dev/null || st=$?
			if [ "$st" -gt 128 ] && why=$(kill -l "$st" 2>/dev/null); then
				why="signal $why"
			else
				why="status $st"
			fi
			if [ $((now - started[i])) -ge $((stable_after * 1000)) ]; then
				delays[i]=$backoff_first
			fi
			delay=${delays[i]}
			delays[i]=$((delay * 2 > backoff_max ? backoff_max : delay * 2))
			pids[i]='' due[i]=$((now + delay * 1000))
			echo "${names[i]} exited ($why); restarting in ${delay}s (log: $logs/${names[i]}.log)" >&3
		elif [ -n "${due[i]}" ] && [ "$now" -ge "${due[i]}" ]; then
			spawn "$i"
			echo "${names[i]} restarted (pid ${pids[i]})" >&3
		fi
	done
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
	# The operator and agent tokens, and Consul's config file giving them to it.
	"${setup[@]}" -init -consul-config "$consul_dir/acl.hcl"
	# -data-dir: where the agent persists tokens set through its API (dev
	# mode keeps everything else in memory); else its working directory.
	start consul "$consul" agent -dev -data-dir "$consul_dir/agent" -client "$consul_client" -bind 127.0.0.1 -ui -log-level warn \
		-hcl 'acl { enabled = true, default_policy = "deny", enable_token_persistence = true }' \
		-hcl 'connect { enabled = true }' -config-file "$consul_dir/acl.hcl"
	wait_for consul "http://$consul_addr/v1/status/leader"
	own_consul=1
fi
# Policies and tokens (a Consul without ACLs is left as it is).
"${setup[@]}" -wait 30s
if [ -n "${own_consul:-}" ]; then
	start meshsetup "${setup[@]}" -watch 2s
fi
for s in "${SERVICES[@]}" api; do
	start "$s" env CONSUL_HTTP_TOKEN_FILE="$consul_dir/tokens/$s.token" "bin/$s"
done
wait_for api "http://$api_probe:8080/healthz"
for s in "${SERVICES[@]}"; do
	wait_for "$s" "http://$consul_addr/v1/health/service/marketmesh.$s?passing=1&filter=Service.Service==marketmesh.$s"
	until [ "$(curl -fsS "http://$consul_addr/v1/health/service/marketmesh.$s?passing=1")" != "[]" ]; do sleep 0.1; done
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))

cat <<MSG

marketmesh is up (${ms} ms)
  API          http://$api_probe:8080      (try: curl http://$api_probe:8080/healthz)
  API ops      http://127.0.0.1:9200      (not public: curl http://127.0.0.1:9200/readyz, /metrics)
  Swagger UI   http://$api_probe:8080/docs
  OpenAPI      http://$api_probe:8080/openapi.json
  Consul UI    http://$consul_addr/ui/  (read only; log in with $consul_dir/operator.token)
  logs         $logs/*.log
  data         $MARKETMESH_DATA_DIR
Ctrl-C stops everything; a process that exits is restarted (1 s, doubling to 30 s).
MSG

# Supervise until Ctrl-C or SIGTERM (the traps above stop everything; nothing
# is restarted after that). supervise prints on fd 3, the terminal. bash itself
# reports each process killed by a signal ("line N: PID Killed ...") on its
# stderr; that, and anything else bash says meanwhile, goes to run.sh.log.
exec 3>&2
while :; do
	supervise
	sleep 0.25
done 2>>"$logs/run.sh.log"
