#!/usr/bin/env bash
# Builds local OCI images without Docker or a registry (see hack/images/build.ts):
#   hack/images/build.sh radflow example-model
# writes ~/.cache/radflow/images/<name>.oci.tar for `ctr -n k8s.io images import`; an image whose
# inputs have not changed is not rebuilt. Needs mmdebstrap (hack/deps.sh installs it) and root
# or unprivileged user namespaces for it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${RADFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radflow}"
mkdir -p "$cache/images"
PATH="$("$repo/hack/node.sh"):$PATH"
export PATH
# one build at a time per cache: the node's cluster and a test may ask at once
exec 9>"$cache/images/build.lock"
flock -n 9 || { echo "images: waiting for another build of $cache/images" >&2; flock 9; }
node "$here/build.ts" "$@"
