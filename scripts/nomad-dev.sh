#!/usr/bin/env bash
# nomad-dev.sh start|stop|env|bin: a real Nomad dev agent on loopback for the
# tests, the benchmarks and `make dev`, against the running dockerd.
#
#   start  finds a Nomad binary, writes the agent config (docker plugin with
#          runc+runsc allowed, caps for the hardened task, gc_max_allocs 5000,
#          the hf-shim host volume), starts `nomad agent -dev -bind=127.0.0.1`
#          in the background, waits until the node is ready with a healthy
#          docker driver and prints `NOMAD_ADDR=http://127.0.0.1:<port>`.
#          An agent this script started already is reused.
#   stop   stops the agent this script started (by its pid file).
#   env    prints NOMAD_ADDR of the running agent (nothing when none runs).
#   bin    prints the path of the Nomad binary it would use (exit 1: none).
#
# The binary: $NOMAD_BIN, else `nomad` on PATH, else the shared Nomad 1.6.5
# build beside the checkout (../shared/nomad/nomad-1.6.5-linux-amd64.xz),
# unpacked into $HYPERFUNC_CACHE (default ~/.cache/hyperfunc) after both its
# checksums were checked against ../shared/nomad/SHA256SUMS.
#
# State (config, log, pid, the shim volume) lives in $NOMAD_DEV_DIR (default
# /tmp/hyperfunc-nomad-dev-$UID). The HTTP port is the first free one from
# $NOMAD_DEV_PORT (default 4646) up, RPC and Serf the next two, so that a
# second checkout on the same machine gets its own agent.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${NOMAD_DEV_DIR:-/tmp/hyperfunc-nomad-dev-$(id -u)}
cache=${HYPERFUNC_CACHE:-${HOME:-/tmp}/.cache/hyperfunc}
shared=${HYPERFUNC_SHARED:-$root/../shared}
pidfile=$state/nomad.pid
addrfile=$state/addr
log=$state/nomad.log

say() { echo "nomad-dev: $*" >&2; }
die() { say "error: $*"; exit 1; }

# find_bin prints the Nomad binary to use; exit 1 (with the reason on
# stderr) when there is none.
find_bin() {
  if [[ -n ${NOMAD_BIN:-} ]]; then
    [[ -x $NOMAD_BIN ]] || die "NOMAD_BIN=$NOMAD_BIN is not an executable file"
    echo "$NOMAD_BIN"
    return
  fi
  if command -v nomad >/dev/null 2>&1; then
    command -v nomad
    return
  fi
  local xz=$shared/nomad/nomad-1.6.5-linux-amd64.xz sums=$shared/nomad/SHA256SUMS
  if [[ ! -f $xz || ! -f $sums ]]; then
    say "no Nomad binary: NOMAD_BIN unset, no nomad on PATH, no $xz"
    return 1
  fi
  local out=$cache/nomad-1.6.5
  local want_xz want_bin
  want_xz=$(awk '$2 == "nomad-1.6.5-linux-amd64.xz" {print $1}' "$sums")
  want_bin=$(awk '$2 == "nomad" {print $1}' "$sums")
  [[ -n $want_xz && -n $want_bin ]] || die "$sums lacks the checksums of the archive and the binary"
  if [[ -x $out ]] && [[ $(sha256sum "$out" | cut -d' ' -f1) == "$want_bin" ]]; then
    echo "$out"
    return
  fi
  [[ $(sha256sum "$xz" | cut -d' ' -f1) == "$want_xz" ]] || die "checksum mismatch: $xz"
  mkdir -p "$cache"
  local tmp
  tmp=$(mktemp "$cache/.nomad.XXXXXX")
  xz -dc "$xz" >"$tmp"
  if [[ $(sha256sum "$tmp" | cut -d' ' -f1) != "$want_bin" ]]; then
    rm -f "$tmp"
    die "checksum mismatch: the unpacked $xz"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$out"
  say "unpacked $xz into $out (checksums match)"
  echo "$out"
}

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# node_ready: the agent's node is ready and its docker driver healthy (the
# nodes list carries the drivers; Attributes is the only nested object).
node_ready() {
  local nodes
  nodes=$(curl -fsS "$1/v1/nodes" 2>/dev/null) || return 1
  [[ $nodes == *'"Status":"ready"'* ]] || return 1
  grep -q '"docker":{"Attributes":{[^}]*},"Detected":true,"HealthDescription":"Healthy","Healthy":true' <<<"$nodes"
}

write_config() {
  local http=$1 shimdir=$2
  cat >"$state/agent.hcl" <<HCL
# Written by scripts/nomad-dev.sh: a dev agent for hyperfunc's tests.
# The docker plugin block is jobspecs/docker-plugin-runsc.hcl's.
ports {
  http = $http
  rpc  = $((http + 1))
  serf = $((http + 2))
}
client {
  # Many short calls: keep Nomad from collecting allocations whose results
  # the executor has not read yet.
  gc_max_allocs = 5000
  # The shim, mounted read-only into every call (no artifact download).
  host_volume "hf-shim" {
    path      = "$shimdir"
    read_only = true
  }
}
plugin "docker" {
  config {
    allow_runtimes = ["runc", "runsc"]
    # No allow_caps: Nomad's default list holds the SETUID, SETGID and
    # KILL a sealed task adds back for its shim (cap_drop ALL otherwise).
    allow_privileged = false
    volumes {
      enabled = false
    }
    gc {
      image = false
      container = true
      # Several dev agents (other checkouts, other tests) may share one
      # dockerd: none may remove the others' containers as dangling.
      dangling_containers {
        enabled = false
      }
    }
  }
}
HCL
}

start() {
  mkdir -p "$state"
  if running && [[ -f $addrfile ]]; then
    say "reusing the agent started before (pid $(cat "$pidfile"))"
    echo "NOMAD_ADDR=$(cat "$addrfile")"
    return
  fi
  local bin
  bin=$(find_bin) || exit 3
  local http=${NOMAD_DEV_PORT:-4646}
  while ! { port_free "$http" && port_free $((http + 1)) && port_free $((http + 2)); }; do
    http=$((http + 10))
    ((http < 5646)) || die "no free ports from ${NOMAD_DEV_PORT:-4646} up"
  done
  local shimdir=$state/shim
  mkdir -p "$shimdir"
  # The shim the calls mount: built from this checkout.
  local gobin=go
  command -v go >/dev/null 2>&1 || gobin=/usr/local/go/bin/go
  (cd "$root" && CGO_ENABLED=0 "$gobin" build -trimpath -ldflags '-s -w' -o "$shimdir/hf-shim" ./cmd/hf-shim)
  chmod 0755 "$shimdir" "$shimdir/hf-shim"
  write_config "$http" "$shimdir"
  local addr=http://127.0.0.1:$http
  say "starting $("$bin" version | head -1) at $addr (log: $log)"
  # The agent outlives this script: it must not inherit its open files,
  # above all the lock of `flock /tmp/hyperfunc-docker.lock make test`
  # (it would hold the shared dockerd's lock for as long as it runs).
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    exec nohup "$bin" agent -dev -bind=127.0.0.1 -config="$state/agent.hcl" >"$log" 2>&1 </dev/null
  ) &
  echo $! >"$pidfile"
  echo "$addr" >"$addrfile"
  local deadline=$((SECONDS + 90))
  until node_ready "$addr"; do
    if ! running; then
      tail -30 "$log" >&2
      die "the agent exited"
    fi
    if ((SECONDS > deadline)); then
      tail -30 "$log" >&2
      stop
      die "the node was not ready with a healthy docker driver within 90s"
    fi
    sleep 0.5
  done
  say "node ready, docker driver healthy"
  echo "NOMAD_ADDR=$addr"
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "stopped the agent (pid $pid)"
  fi
  rm -f "$pidfile" "$addrfile"
}

case ${1:-} in
start) start ;;
stop) stop ;;
env) if running && [[ -f $addrfile ]]; then echo "NOMAD_ADDR=$(cat "$addrfile")"; fi ;;
bin) find_bin ;;
*) echo "usage: $0 start|stop|env|bin" >&2; exit 2 ;;
esac
