#!/usr/bin/env bash
# Builds Argo Workflows' workflow-controller from the Go module proxy into the radflow cache, for
# the benchmark only (bench/scenarios/argo.ts): it is not part of hack/tools/build.sh's default
# set, so tests and CI never pay for it. Keyed by this directory's go.mod + go.sum + this script
# + the Go version; later runs reuse the cache.
#
# Usage: hack/tools/argo/build.sh        prints the workflow-controller binary on its last line
#        hack/tools/argo/build.sh crds   prints the directory of the pinned release's CRDs
#                                        (manifests/base/crds/minimal in the module cache)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${RADFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radflow}"
module=github.com/argoproj/argo-workflows/v4
export GOFLAGS=-mod=mod

if [ "${1:-}" = crds ]; then
  # `go mod download` fetches the pinned module (a no-op once it is in the module cache)
  dir="$(cd "$here" && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [ -d "$dir/manifests/base/crds/minimal" ] || { echo "argo: no CRDs under $dir" >&2; exit 1; }
  echo "$dir/manifests/base/crds/minimal"
  exit 0
fi

key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(go env GOVERSION) | sha256sum | cut -c1-16)"
out="$cache/argo-$key"
if [ ! -f "$out/.done" ]; then
  echo "tools: building argo workflow-controller ($key) — the first build takes minutes; later runs reuse $cache" >&2
  start=$(date +%s)
  rm -rf "$out" && mkdir -p "$out"
  version="$(awk -v m="$module" '$1==m {print $2; exit}' "$here/go.mod")"
  # the release's version, as its own build stamps it (the default executor image is named after it)
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $module.version=$version" -o "$out/" "$module/cmd/workflow-controller") >&2
  touch "$out/.done"
  echo "tools: argo workflow-controller built in $(( $(date +%s) - start )) s" >&2
fi
echo "$out/workflow-controller"
