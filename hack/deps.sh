#!/usr/bin/env bash
# Installs the Debian packages radflow's tests and demo use, when they are missing. `npm test`
# (pretest), the demo and .ci/run call it, so a fresh machine needs nothing installed by hand.
#   trang, libxml2-utils: validate DICOM audit messages against the RELAX NG schema
#   dcmtk: real DICOM Part-10 files, storescu/echoscu as the gateway's peers
#   openssl: certificates for the local cluster and TLS syslog
#   rsyslog, rsyslog-openssl: the Audit Record Repository of the integration tests (TLS)
#   maven, default-jre-headless: the offline FHIR R4 checker (hack/tools/fhir-validator)
#   orthanc, orthanc-dicomweb: the PACS that exports are sent to (C-STORE and STOW-RS) in the export tests
#   libseccomp-dev, pkg-config, gcc: runc's seccomp support and the static pause binary of the
#     real node (hack/tools/build.sh runc, hack/real-node/pause.sh)
#   mmdebstrap: the Debian root filesystem of the local OCI images (hack/images/build.sh)
#   umoci: an OCI image tool that checks and unpacks those images (test/integration/images.test.ts)
set -euo pipefail
want=(trang libxml2-utils dcmtk openssl rsyslog rsyslog-openssl maven default-jre-headless libseccomp-dev pkg-config gcc libc6-dev mmdebstrap umoci orthanc orthanc-dicomweb)
need=()
for p in "${want[@]}"; do
  # by package, not by command: rsyslog-openssl is a module, not a program
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "deps: installing ${need[*]} from Debian" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
