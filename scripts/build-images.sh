#!/usr/bin/env bash
# build-images.sh: build the images the seed walkthrough pulls and push them
# into the local registry (127.0.0.1:5000), which setup-docker.sh makes the
# Docker Hub mirror, so `docker pull ubuntu` and `docker pull v4tech/imagemagick`
# work verbatim with no traffic leaving loopback. Both are STAND-INS, not the
# real images:
#   ubuntu:latest              FROM scratch + busybox-static and its applet
#                              symlinks in /bin (sh, echo, cat, ...)
#   v4tech/imagemagick:latest  FROM scratch + /usr/bin/convert, a static Go
#                              program (e2e/testdata/imagemagick) that does
#                              `convert - -resize P% fd:1` for JPEG and PNG
# Images are tagged with a hash of their content and pushed only when that
# tag is missing (FORCE=1 pushes anyway). Needs go, docker, curl, busybox.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=127.0.0.1:5000
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "build-images: $*"; }

# publish REPO ROOTFS CHANGE...: import ROOTFS as REPO:latest and push it.
publish() {
  local repo=$1 root=$2; shift 2
  local changes=() c tarball="$work/${repo//\//_}.tar"
  for c in "$@"; do changes+=(--change "$c"); done
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$tarball" .
  local tag
  tag=src-$( (sha256sum <"$tarball"; printf '%s\n' "$@") | sha256sum | cut -c1-16)
  if [[ ${FORCE:-} != 1 ]] && curl -fs -m 5 -o /dev/null \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$REGISTRY/v2/$repo/manifests/$tag"; then
    log "$repo:$tag already in $REGISTRY"
    return
  fi
  log "importing $repo ($(du -h "$tarball" | cut -f1)) and pushing $REGISTRY/$repo:{latest,$tag}"
  docker import "${changes[@]}" "$tarball" "$REGISTRY/$repo:$tag" >/dev/null
  docker tag "$REGISTRY/$repo:$tag" "$REGISTRY/$repo:latest"
  docker push -q "$REGISTRY/$repo:$tag" >/dev/null
  docker push -q "$REGISTRY/$repo:latest" >/dev/null
  # Drop the local tags: a plain `docker pull` must go through the mirror.
  docker rmi "$REGISTRY/$repo:$tag" "$REGISTRY/$repo:latest" >/dev/null
}

# ubuntu: busybox stand-in.
root=$work/ubuntu
mkdir -p "$root"/{bin,etc,root,tmp,usr/bin,var}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
publish library/ubuntu "$root" "ENV PATH=$STD_PATH" 'CMD ["/bin/sh"]'

# v4tech/imagemagick: convert stand-in.
root=$work/imagemagick
mkdir -p "$root"/{tmp,usr/bin}
chmod 1777 "$root/tmp"
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$root/usr/bin/convert" ./e2e/testdata/imagemagick
publish v4tech/imagemagick "$root" "ENV PATH=$STD_PATH"

# Verify through the mirror, as the walkthrough does.
for image in ubuntu v4tech/imagemagick; do
  docker rmi "$image:latest" >/dev/null 2>&1 || true # in use: pull still checks the mirror
  log "docker pull $image"
  docker pull -q "$image" >/dev/null
done
out=$(docker run --rm --runtime=runsc --network=none ubuntu echo HelloWorld)
[[ $out == HelloWorld ]] || { echo "build-images: ubuntu echo said '$out'" >&2; exit 1; }
log "ok: docker run --runtime=runsc --network=none ubuntu echo HelloWorld -> $out"
