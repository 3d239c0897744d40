#!/usr/bin/env bash
# setup-docker.sh: make this Debian bookworm machine ready to run hyperfunc
# functions on the local Docker engine, with no traffic leaving loopback.
# Idempotent; run as root. Used by the README, `make dev` and CI.
#   1. installs docker.io, runsc, busybox-static, docker-registry (Debian packages)
#   2. writes /etc/docker/daemon.json (no bridge, no iptables, runsc runtime,
#      the local registry as the Docker Hub mirror) and converges dockerd to it
#   3. starts the local registry on 127.0.0.1:5000
#   4. runs scripts/build-images.sh (stand-in images for `docker pull ubuntu`
#      and `docker pull v4tech/imagemagick`); SKIP_IMAGES=1 skips it
set -euo pipefail

REGISTRY=127.0.0.1:5000
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/var/log/hyperfunc-dockerd.log
REGISTRY_CONF=/etc/hyperfunc/registry.yml
REGISTRY_DATA=/var/lib/hyperfunc-registry
REGISTRY_LOG=/var/log/hyperfunc-registry.log

log() { echo "setup-docker: $*"; }
die() { echo "setup-docker: error: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# 1. Packages.
missing=()
for pkg in docker.io runsc busybox-static docker-registry; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
  log "packages already installed"
fi

# 2. dockerd. The file is ours: it is rewritten whole.
mkdir -p /etc/docker
want=$(cat <<JSON
{
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "registry-mirrors": ["http://$REGISTRY"],
  "runtimes": { "runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"] } }
}
JSON
)
if [[ -f $DAEMON_JSON && $(cat "$DAEMON_JSON") == "$want" ]]; then
  log "$DAEMON_JSON up to date"
else
  log "writing $DAEMON_JSON"
  printf '%s\n' "$want" >"$DAEMON_JSON.tmp" && mv "$DAEMON_JSON.tmp" "$DAEMON_JSON"
fi

# converged: the running dockerd answers and has the mirror, runsc and no bridge.
converged() {
  local info
  info=$(docker info --format '{{json .RegistryConfig.Mirrors}} {{json .Runtimes}}' 2>/dev/null) || return 1
  [[ $info == *"http://$REGISTRY/"* && $info == *'"runsc"'* ]] || return 1
  ! docker network ls --format '{{.Name}}' | grep -qx bridge
}
# detached LOG COMMAND...: start a daemon that outlives this script without
# its open files: under `flock /tmp/hyperfunc-docker.lock make test` an
# inherited lock fd would keep the shared lock held for as long as the
# daemon runs, and every other run waits forever.
detached() {
  local out=$1; shift
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    exec setsid nohup "$@" >>"$out" 2>&1 </dev/null
  ) &
}
start_dockerd() {
  log "starting dockerd (log: $DOCKERD_LOG)"
  detached "$DOCKERD_LOG" dockerd
  wait_for 60 docker info || die "dockerd did not answer within 60s; see $DOCKERD_LOG"
}
if ! docker info >/dev/null 2>&1; then
  start_dockerd
elif ! converged; then
  # runtimes and registry-mirrors are reloadable; bridge and iptables are not.
  log "dockerd differs from $DAEMON_JSON: reloading it (SIGHUP)"
  kill -HUP "$(pidof dockerd)"
  if ! wait_for 10 converged; then
    log "reload was not enough: restarting dockerd"
    kill -TERM "$(pidof dockerd)"
    wait_for 60 bash -c '! pidof dockerd' || die "dockerd did not stop"
    start_dockerd
  fi
fi
wait_for 30 converged || die "dockerd does not have the mirror, runsc and no bridge; see $DOCKERD_LOG"
log "dockerd ready: runtimes $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}'), mirror http://$REGISTRY"

# 3. The local registry (Docker Hub mirror and push target).
registry_up() { curl -fs -m 2 -o /dev/null "http://$REGISTRY/v2/"; }
if registry_up; then
  log "registry answers on $REGISTRY"
else
  mkdir -p "$(dirname "$REGISTRY_CONF")" "$REGISTRY_DATA"
  cat >"$REGISTRY_CONF" <<YAML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $REGISTRY_DATA }
  delete: { enabled: true }
http:
  addr: $REGISTRY
YAML
  log "starting docker-registry on $REGISTRY (data: $REGISTRY_DATA, log: $REGISTRY_LOG)"
  detached "$REGISTRY_LOG" docker-registry serve "$REGISTRY_CONF"
  wait_for 30 registry_up || die "registry did not answer within 30s; see $REGISTRY_LOG"
fi

# 4. Stand-in images.
if [[ ${SKIP_IMAGES:-} == 1 ]]; then
  log "SKIP_IMAGES=1: not building images"
else
  "$(dirname "$0")/build-images.sh"
fi
log "done"
