#!/usr/bin/env bash
# Builds the offline FHIR R4 validator (HAPI FHIR from Maven Central) into the radflow cache,
# keyed by this directory's contents; later runs reuse it. Prints the classpath on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${RADFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/radflow}"
key="$(cd "$here" && cat pom.xml build.sh $(find src -type f | sort) | sha256sum | cut -c1-16)"
out="$cache/fhir-validator-$key"
if [ ! -f "$out/.done" ]; then
  echo "tools: building fhir-validator ($key) with Maven — the first build downloads HAPI FHIR" >&2
  rm -rf "$out" && mkdir -p "$out"
  cp -r "$here/pom.xml" "$here/src" "$out/"
  # -B: no progress bars; the local repository lives in the cache too, so ~/.m2 stays untouched
  (cd "$out" && mvn -B -q -Dmaven.repo.local="$cache/m2" package >&2)
  touch "$out/.done"
fi
echo "$out/target/fhir-validator-1.jar:$out/target/lib/*"
