#!/usr/bin/env bash
# Build minik's test images offline from Debian's static busybox (/bin/busybox, package
# busybox-static; scripts/deps.sh installs it), each as an OCI image layout tarball and as a
# docker-archive tarball (what `docker save` writes):
#
#   docker.io/library/busybox:latest  one layer: /bin/busybox with a symlink per applet,
#                                     /etc/passwd, /etc/group, /tmp, /root; Cmd ["sh"]
#   docker.io/minik/httpd:latest      the busybox layer plus a layer with /www/index.html
#                                     ("hello from minik httpd");
#                                     Cmd ["httpd","-f","-p","8080","-h","/www"]
#   docker.io/minik/pause:latest      only when asked for (NAME pause): the busybox layer with
#                                     Cmd ["sleep","infinity"], the pod sandbox image of the
#                                     containerd tests (no registry.k8s.io/pause offline)
#
# Reproducible: the same busybox gives byte-identical tarballs (sorted names, mtime 0, owner
# 0:0, gzip without a name or timestamp). Usage: scripts/images.sh OUTDIR [NAME...], NAME one
# of busybox, httpd, pause (default: busybox httpd).
# Prints the paths of the tarballs (two per image), one a line.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUTDIR [busybox|httpd|pause]..." >&2
  exit 2
fi
OUT=$1
shift
NAMES=("$@")
((${#NAMES[@]})) || NAMES=(busybox httpd)
for n in "${NAMES[@]}"; do
  case $n in
  busybox | httpd | pause) ;;
  *)
    echo "images: unknown image $n (busybox, httpd, pause)" >&2
    exit 2
    ;;
  esac
done
BUSYBOX=${BUSYBOX:-/bin/busybox}
if [[ ! -x $BUSYBOX ]]; then
  echo "images: $BUSYBOX is missing: install busybox-static (scripts/deps.sh)" >&2
  exit 1
fi
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
  echo "images: $BUSYBOX does not list its applets: it must be busybox-static" >&2
  exit 1
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

ENV_PATH='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_LAYER_GZIP=application/vnd.oci.image.layer.v1.tar+gzip

# A reproducible tar of a directory's contents on stdout.
tar_dir() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$1" -cf - .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# The busybox root filesystem.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,etc,tmp,root}
chmod 1777 "$ROOTFS/tmp"
chmod 0700 "$ROOTFS/root"
chmod 0755 "$ROOTFS" "$ROOTFS/bin" "$ROOTFS/etc"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
chmod 0755 "$ROOTFS/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$ROOTFS/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"

# The httpd layer.
WWW=$WORK/www
mkdir -p "$WWW/www"
chmod 0755 "$WWW" "$WWW/www"
echo "hello from minik httpd" >"$WWW/www/index.html"
chmod 0644 "$WWW/www/index.html"

# Layers: uncompressed (diff id; the docker-archive carries these) and gzipped (OCI).
LAYERS=$WORK/layers
mkdir -p "$LAYERS"
make_layer() { # NAME DIR
  tar_dir "$2" >"$LAYERS/$1.tar"
  gzip -n -9 -c "$LAYERS/$1.tar" >"$LAYERS/$1.tar.gz"
}
make_layer base "$ROOTFS"
make_layer www "$WWW"

# The image config: CMD_JSON LAYER...
config_json() {
  local cmd=$1 diff_ids="" history="" sep=""
  shift
  for l in "$@"; do
    diff_ids+="$sep\"sha256:$(sha "$LAYERS/$l.tar")\""
    history+="$sep{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"scripts/images.sh $l\"}"
    sep=,
  done
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",'
  printf '"config":{"Env":["%s"],"Cmd":%s},' "$ENV_PATH" "$cmd"
  printf '"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' "$diff_ids" "$history"
}

# An OCI image layout tarball: NAME FULL_REF CMD_JSON LAYER...
oci_tarball() {
  local name=$1 ref=$2 cmd=$3
  shift 3
  local dir=$WORK/oci-$name
  mkdir -p "$dir/blobs/sha256"
  local config=$WORK/$name.config.json
  config_json "$cmd" "$@" >"$config"
  local cdig
  cdig=$(sha "$config")
  cp "$config" "$dir/blobs/sha256/$cdig"
  local layers="" sep="" l ldig
  for l in "$@"; do
    ldig=$(sha "$LAYERS/$l.tar.gz")
    cp "$LAYERS/$l.tar.gz" "$dir/blobs/sha256/$ldig"
    layers+="$sep{\"mediaType\":\"$MT_LAYER_GZIP\",\"digest\":\"sha256:$ldig\",\"size\":$(size "$LAYERS/$l.tar.gz")}"
    sep=,
  done
  local manifest=$WORK/$name.manifest.json
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$MT_MANIFEST" "$MT_CONFIG" "$cdig" "$(size "$config")" "$layers" >"$manifest"
  local mdig
  mdig=$(sha "$manifest")
  cp "$manifest" "$dir/blobs/sha256/$mdig"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$MT_INDEX" "$MT_MANIFEST" "$mdig" "$(size "$manifest")" "$ref" "${ref##*:}" >"$dir/index.json"
  tar_dir "$dir" >"$OUT/$name.oci.tar"
  echo "$OUT/$name.oci.tar"
}

# A docker-archive tarball (docker save's classic layout, uncompressed layers):
# NAME REPO_TAG CMD_JSON LAYER...
docker_tarball() {
  local name=$1 tag=$2 cmd=$3
  shift 3
  local dir=$WORK/docker-$name
  mkdir -p "$dir"
  local config=$WORK/$name.config.json
  config_json "$cmd" "$@" >"$config"
  local cdig
  cdig=$(sha "$config")
  cp "$config" "$dir/$cdig.json"
  local layers="" sep="" l ldig
  for l in "$@"; do
    ldig=$(sha "$LAYERS/$l.tar")
    mkdir -p "$dir/$ldig"
    cp "$LAYERS/$l.tar" "$dir/$ldig/layer.tar"
    layers+="$sep\"$ldig/layer.tar\""
    sep=,
  done
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$cdig" "$tag" "$layers" \
    >"$dir/manifest.json"
  tar_dir "$dir" >"$OUT/$name.docker.tar"
  echo "$OUT/$name.docker.tar"
}

BUSYBOX_CMD='["sh"]'
HTTPD_CMD='["httpd","-f","-p","8080","-h","/www"]'
PAUSE_CMD='["sleep","infinity"]'
for n in "${NAMES[@]}"; do
  case $n in
  busybox)
    oci_tarball busybox docker.io/library/busybox:latest "$BUSYBOX_CMD" base
    docker_tarball busybox busybox:latest "$BUSYBOX_CMD" base
    ;;
  httpd)
    oci_tarball httpd docker.io/minik/httpd:latest "$HTTPD_CMD" base www
    docker_tarball httpd minik/httpd:latest "$HTTPD_CMD" base www
    ;;
  pause)
    oci_tarball pause docker.io/minik/pause:latest "$PAUSE_CMD" base
    docker_tarball pause minik/pause:latest "$PAUSE_CMD" base
    ;;
  esac
done
