#!/usr/bin/env bash
# install-go.sh: make sure the Go toolchain this module needs is installed,
# so `make` works on a fresh Debian bookworm machine without Go.
#
# Go found on PATH or in /usr/local/go at go.mod's version (or newer): done.
# Otherwise (as root): Debian has only Go 1.19 (golang-1.19-go), too old to
# build this module but able to fetch the official toolchain, which the Go
# project publishes as the module golang.org/toolchain (what `go` itself
# downloads for GOTOOLCHAIN). So: install golang-1.19-go (it does not take
# /usr/bin/go), `go mod download` the toolchain module through the Go
# module proxy (checksums verified against the checksum database), and put
# it in /usr/local/go. Nothing comes from anywhere but Debian's packages
# and the Go module proxy.
#
#   GO_VERSION    the version to install (default 1.26.8)
#   GO_DEST       where (default /usr/local/go)
#   GO_BOOTSTRAP  a go (>= 1.17) to fetch it with, instead of Debian's
set -euo pipefail
cd "$(dirname "$0")/.."

WANT=${GO_VERSION:-1.26.8}
DEST=${GO_DEST:-/usr/local/go}
NEED=$(awk '$1 == "go" { print $2; exit }' go.mod) # go.mod's minimum

log() { echo "install-go: $*"; }
die() { echo "install-go: error: $*" >&2; exit 1; }

# new_enough GO: GO runs and is at least go.mod's version.
new_enough() {
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  [[ $(printf '%s\n%s\n' "$NEED" "$v" | sort -V | head -1) == "$NEED" ]]
}

for go in "$(command -v go || true)" "$DEST/bin/go"; do
  if [[ -n $go && -x $go ]] && new_enough "$go"; then
    log "$("$go" version) at $go: nothing to do"
    exit 0
  fi
done

[[ $(id -u) == 0 ]] || die "Go >= $NEED is not installed; run this script as root (or install Go $WANT into $DEST by hand)"

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "no Go toolchain for $(uname -m)" ;;
esac

BOOT_PKG=golang-1.19-go
BOOT=${GO_BOOTSTRAP:-/usr/lib/go-1.19/bin/go}
if [[ ! -x $BOOT ]]; then
  log "installing Debian's $BOOT_PKG to fetch the toolchain with"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$BOOT_PKG" ca-certificates
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mod=golang.org/toolchain@v0.0.1-go$WANT.linux-$arch
log "downloading $mod through the Go module proxy"
# From the empty work dir: the old go must not read this module's go.mod.
json=$(cd "$work" && env -i PATH=/usr/bin:/bin HOME="$work" GOPATH="$work/gopath" GOFLAGS=-modcacherw \
  GOPROXY="${GOPROXY:-https://proxy.golang.org}" GOSUMDB="${GOSUMDB:-sum.golang.org}" \
  "$BOOT" mod download -json "$mod") || die "go mod download $mod failed: $json"
dir=$(awk -F'"' '$2 == "Dir" { print $4 }' <<<"$json")
[[ -n $dir && -f $dir/bin/go ]] || die "the toolchain module has no bin/go"

# Module zips keep no file modes: make the programs executable again, as
# the go command does when it installs a toolchain this way.
chmod -R u+w "$dir"
chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/*
rm -rf "$DEST.new"
cp -a "$dir" "$DEST.new"
if [[ -e $DEST ]]; then
  rm -rf "$DEST.old"
  mv "$DEST" "$DEST.old"
fi
mv "$DEST.new" "$DEST"
rm -rf "$DEST.old"
new_enough "$DEST/bin/go" || die "$DEST/bin/go does not run"
log "installed $("$DEST/bin/go" version) in $DEST (add $DEST/bin to PATH; the Makefile does)"
