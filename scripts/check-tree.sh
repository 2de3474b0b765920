#!/usr/bin/env bash
# Fails when the tree holds what must not be committed: an executable binary
# (ELF, Mach-O, PE: a stray `go build` output) or any file over 1 MiB.
# Checks the files git tracks plus untracked files not ignored, so a binary
# is caught before it is added. Run by `make vet`.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the work tree
	size=$(stat -c %s "$f")
	if [ "$size" -gt "$limit" ]; then
		echo "check-tree: $f is $size bytes (limit $limit): generated files belong in bin/ or a temp dir" >&2
		bad=1
	fi
	magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cffaedfe | cefaedfe | feedface | feedfacf | cafebabe | 4d5a*)
		echo "check-tree: $f is an executable binary: build with -o bin/... and never commit it" >&2
		bad=1
		;;
	esac
done < <(git ls-files -z --cached --others --exclude-standard)
exit $bad
