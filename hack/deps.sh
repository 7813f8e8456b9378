#!/usr/bin/env bash
# Installs the Debian packages radflow's tests and demo use, when they are missing.
#   trang, libxml2-utils: validate DICOM audit messages against the RELAX NG schema
#   dcmtk: make real DICOM Part-10 files for tests and the demo
#   openssl: certificates for the local cluster and TLS syslog
set -euo pipefail
need=()
command -v trang >/dev/null || need+=(trang)
command -v xmllint >/dev/null || need+=(libxml2-utils)
command -v dump2dcm >/dev/null || need+=(dcmtk)
command -v openssl >/dev/null || need+=(openssl)
command -v rsyslogd >/dev/null || need+=(rsyslog rsyslog-openssl); command -v mvn >/dev/null || need+=(maven default-jre-headless)
[ ${#need[@]} -eq 0 ] && exit 0
echo "deps: installing ${need[*]} from Debian" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
