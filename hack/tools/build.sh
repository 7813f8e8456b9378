#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy with the machine's Go,
# into a cache outside the repo keyed by the pinned versions (each tool's go.mod + go.sum).
# Later runs reuse the cache; nothing is downloaded from anywhere but the registries.
#
# Usage: hack/tools/build.sh [tool...]     (default: every tool)
# Prints the bin directory on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${RADFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radflow}"
bindir="$cache/bin"
mkdir -p "$bindir" "$cache/stamps"

# tool module -> binaries it provides, and the go packages to build
declare -A pkgs=(
  [kubernetes]="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  [etcd]="go.etcd.io/etcd/server/v3"
  [kwok]="sigs.k8s.io/kwok/cmd/kwok"
  [helm]="helm.sh/helm/v3/cmd/helm"
  [nats-server]="github.com/nats-io/nats-server/v2"
  [promtool]="github.com/prometheus/prometheus/cmd/promtool"
  # the real node (hack/cluster up --real-node)
  [runc]="github.com/opencontainers/runc"
  [containerd]="github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr"
  [cni-plugins]="github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap"
  [kubelet]="k8s.io/kubernetes/cmd/kubelet"
)
order=(nats-server etcd kwok helm kubernetes promtool runc containerd cni-plugins kubelet)
[ $# -gt 0 ] && order=("$@")

# version of a module as pinned in a tool's go.mod
modver() { awk -v m="$2" '$1==m {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$here/$1/go.mod"; }

ldflags_for() {
  case "$1" in
    kubernetes | kubelet)
      local v; v="$(modver "$1" k8s.io/kubernetes)"
      local minor; minor="$(echo "$v" | cut -d. -f2)"
      local p=k8s.io/component-base/version
      echo "-s -w -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
      ;;
    etcd) echo "-s -w" ;;
    kwok)
      echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$(modver kwok sigs.k8s.io/kwok)"
      ;;
    helm)
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$(modver helm helm.sh/helm/v3)"
      ;;
    runc) echo "-s -w -X main.version=$(modver runc github.com/opencontainers/runc | sed 's/^v//')" ;;
    containerd)
      local p=github.com/containerd/containerd/v2/version
      echo "-s -w -X $p.Version=$(modver containerd github.com/containerd/containerd/v2) -X $p.Package=github.com/containerd/containerd/v2"
      ;;
    cni-plugins)
      echo "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(modver cni-plugins github.com/containernetworking/plugins)"
      ;;
    *) echo "-s -w" ;;
  esac
}

# runc alone needs cgo: libseccomp (Debian libseccomp-dev, pkg-config) behind the seccomp tag,
# without which it refuses the RuntimeDefault profile radflow's Jobs ask for.
cgo_for() { [ "$1" = runc ] && echo 1 || echo 0; }
tags_for() { [ "$1" = runc ] && echo seccomp || echo ""; }

for tool in "${order[@]}"; do
  [ -d "$here/$tool" ] || { echo "unknown tool: $tool" >&2; exit 2; }
  # The key is what decides this tool's bytes: its pins, Go, and its own recipe (packages, flags).
  # Not all of build.sh: adding a tool must not rebuild the others (a cold rebuild is ~40 min).
  recipe="pkgs=${pkgs[$tool]} ldflags=$(ldflags_for "$tool") cgo=$(cgo_for "$tool") tags=$(tags_for "$tool") etcd-rename"
  key="$(cat "$here/$tool/go.mod" "$here/$tool/go.sum" <(go env GOVERSION) <(echo "$recipe") | sha256sum | cut -c1-16)"
  stamp="$cache/stamps/$tool-$key"
  if [ -f "$stamp" ]; then
    echo "tools: $tool up to date ($key)" >&2
    continue
  fi
  echo "tools: building $tool ($key) — the first build takes minutes; later runs reuse $cache" >&2
  start=$(date +%s)
  tmp="$cache/tmp-$tool"
  rm -rf "$tmp" && mkdir -p "$tmp"
  # -trimpath and a fixed build date keep the output independent of where the repo lives.
  (cd "$here/$tool" && GOFLAGS=-mod=mod CGO_ENABLED="$(cgo_for "$tool")" go build -trimpath -tags "$(tags_for "$tool")" -ldflags "$(ldflags_for "$tool")" -o "$tmp/" ${pkgs[$tool]}) &
  pid=$!
  # visible progress: a dot every 15 s while the compiler works
  while kill -0 "$pid" 2>/dev/null; do sleep 15; kill -0 "$pid" 2>/dev/null && printf '.' >&2; done; echo >&2
  wait "$pid"
  # `go build` names etcd's binary "server" (go.etcd.io/etcd/server/v3, major suffix dropped).
  if [ "$tool" = etcd ]; then mv "$tmp/server" "$tmp/etcd"; fi
  mv "$tmp"/* "$bindir/"
  rm -rf "$tmp"
  touch "$stamp"
  echo "tools: $tool built in $(( $(date +%s) - start )) s" >&2
done
echo "$bindir"
