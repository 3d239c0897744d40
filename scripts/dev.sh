#!/usr/bin/env bash
# Starts a one-node hyperfunc agent on the local Docker engine (ACLs off,
# data in a temporary dir) in the background, then makes a first call.
# `scripts/dev.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
pidfile=/tmp/hyperfunc-dev.pid
log=/tmp/hyperfunc-dev.log
export HYPER_ADDR=${HYPER_ADDR:-http://127.0.0.1:4680}

if [ "${1:-}" = stop ]; then
  if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then echo "stopped the dev agent"; fi
  rm -f "$pidfile"
  exit 0
fi

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "==> a dev agent is already running (pid $(cat "$pidfile"))"
else
  echo "==> starting hyperfunc agent -dev (log: $log)"
  nohup bin/hyperfunc agent -dev >"$log" 2>&1 &
  echo $! >"$pidfile"
fi
# Health is ok once the agent is ready (leader, executor); a busy machine
# may take a while.
for _ in $(seq 1 600); do
  curl -fsS "$HYPER_ADDR/v1/agent/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$HYPER_ADDR/v1/agent/health" >/dev/null || { echo "agent did not become healthy; see $log"; tail -20 "$log"; exit 1; }

echo "==> the seed's walkthrough"
set -x
bin/hyper pull ubuntu
bin/hyper func rm helloworld >/dev/null 2>&1 || true
bin/hyper func create --name helloworld ubuntu echo HelloWorld
id=$(bin/hyper func call helloworld | awk '{print $2}')
bin/hyper func get --wait "$id"
bin/hyper func logs helloworld
# A clean slate: the README's walkthrough creates helloworld itself.
bin/hyper func rm helloworld
set +x
echo
echo "==> the agent keeps running at $HYPER_ADDR with no functions: follow the README's walkthrough"
echo "    (export PATH=\$PWD/bin:\$PATH), try 'hyper func --help', stop it with 'make stop'"
