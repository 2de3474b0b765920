#!/usr/bin/env bash
# Prints the path of a consul binary: the one on PATH if any, else one built
# once from the pinned Consul Go module into a cache outside the repository.
# Consul is not packaged in Debian and no prebuilt binary can be downloaded
# here, so the Go module is the one source we can rely on.
set -euo pipefail

CONSUL_VERSION="${CONSUL_VERSION:-1.22.0}"
cache="${MARKETMESH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketmesh}"
bin="$cache/consul-$CONSUL_VERSION/consul"

if [ -z "${MARKETMESH_BUILD_CONSUL:-}" ] && command -v consul >/dev/null 2>&1; then
	command -v consul
	exit 0
fi
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

echo "building consul v$CONSUL_VERSION from its Go module into $bin (once, ~4 min)..." >&2
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mod="github.com/hashicorp/consul@v$CONSUL_VERSION"
dir=$(GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "consul.sh: go mod download $mod failed" >&2; exit 1; }
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
# The module's replace directives point at sibling folders of its repository,
# which the module zip does not contain: use the published submodules instead.
for sub in api sdk proto-public envoyextensions troubleshoot; do
	go mod edit -dropreplace "github.com/hashicorp/consul/$sub"
done
mkdir -p "$(dirname "$bin")"
GOWORK=off GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod CGO_ENABLED=0 \
	go build -trimpath -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
echo "$bin"
