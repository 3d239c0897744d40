#!/usr/bin/env bash
# Runs hyperfunc's benchmarks (DESIGN.md §9) and prints a summary with the
# ratios measured side by side in this run. docs/BENCHMARKS.md explains the
# figures. Raw `go test -bench` output is kept in $BENCH_OUT.
#
#   bash scripts/bench.sh            # everything, about 6 minutes on 2 cores
#   BENCH_ONLY=cluster bash scripts/bench.sh   # one group: cluster, fsm, cache, echo, nomad, memory
#   BENCH_ONLY=memory bash scripts/bench.sh    # issue 12 alone, 7-10 minutes on 2 cores
#
# The memory group (issue 12) runs 3 agent processes; HF_BENCH_MEMORY picks
# its phases (all, or a comma list of big,restart,wipe,small,load) and
# HF_BENCH_BIG_FNS, HF_BENCH_BIG_CALLS, HF_BENCH_SMALL_FNS,
# HF_BENCH_SMALL_CALLS, HF_BENCH_LOAD_SECS its sizes (bench/memory_test.go).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
BENCH_OUT=${BENCH_OUT:-$(mktemp -t hyperfunc-bench.XXXXXX)}
ONLY=${BENCH_ONLY:-}
: >"$BENCH_OUT"

run() { # group, go test arguments...
	local group=$1
	shift
	if [[ -n $ONLY && $ONLY != "$group" ]]; then return; fi
	echo "== $group: go test -run '^\$' $*" >&2
	# Agent and executor logs go to stderr; only the result lines matter.
	$GO test -run '^$' "$@" 2>&1 | tee -a "$BENCH_OUT" | grep -E '^(Benchmark|ok|FAIL|---|panic)' >&2
}

# 1 and 3: committed enqueues and accepted calls on a 3-node loopback cluster.
run cluster -bench 'Enqueue|Accept' -benchtime 3s -timeout 10m ./bench/
# 2: a million queued calls: snapshot, restore, memory per call.
run fsm -bench 'Snapshot1M|MemoryPerCall' -benchtime 1x -timeout 20m ./bench/
# 5: one output insert into a full 50 MiB output cache.
run cache -bench 'CacheRotation' -benchtime 2000x -timeout 10m ./bench/
# 4: sync echo through hyperfunc (cold, and with --warm 2) vs docker run,
# and the executor alone.
run echo -bench 'SyncEcho|DockerRunRunsc' -benchtime 10x -timeout 10m ./bench/ ./localexec/

# 6: the frontend on Nomad against raw dispatches of the same job, side by
# side, on a real Nomad: NOMAD_ADDR, else a dev agent started here
# (scripts/nomad-dev.sh) and stopped afterwards; the Nomad double only when
# no Nomad binary is found. Each with the shim from the client's host
# volume and as a per-allocation artifact.
if [[ (-z $ONLY || $ONLY == nomad) && -z ${NOMAD_ADDR:-} ]]; then
	if out=$(bash scripts/nomad-dev.sh start); then
		export NOMAD_ADDR=${out#NOMAD_ADDR=}
		trap 'bash scripts/nomad-dev.sh stop' EXIT
	else
		echo "== nomad: no Nomad binary, measuring against the Nomad double" >&2
	fi
fi
run nomad -bench 'NomadLatency|NomadThroughput' -benchtime 20x -timeout 10m ./nomadjob/
# 6w: a sync call with --warm 2 vs a raw dispatch (issue 13), real Nomad only:
# the double's tasks take milliseconds, there is no boot to save.
if [[ -n ${NOMAD_ADDR:-} ]]; then
	run nomad -bench 'NomadWarm' -benchtime 20x -timeout 15m ./nomadjob/
fi

# 7: memory per node and Raft entry sizes (issue 12), 3 agent processes. A
# test, not a benchmark, so its phases share one cluster; it prints MEM lines.
if [[ -z $ONLY || $ONLY == memory ]]; then
	export HF_BENCH_MEMORY=${HF_BENCH_MEMORY:-all}
	echo "== memory: HF_BENCH_MEMORY=$HF_BENCH_MEMORY go test -count=1 -run '^TestMemoryIssue12\$' -v ./bench/" >&2
	$GO test -count=1 -run '^TestMemoryIssue12$' -v -timeout 60m ./bench/ 2>&1 | tee -a "$BENCH_OUT" |
		grep -E '^(MEM|ok|FAIL|--- |panic)|memory_test' >&2 || true
fi

# metric <regex on package:BenchmarkName> <unit>: the value of a unit on its line.
metric() {
	awk -v re="$1" -v unit="$2" '
		$1 == "pkg:" { n = split($2, parts, "/"); pkg = parts[n] }
		$1 ~ "^Benchmark" && (pkg ":" $1) ~ re {
			for (i = 3; i < NF; i++) if ($(i+1) == unit) { print $i; exit }
		}' "$BENCH_OUT"
}
nsop() { metric "$1" "ns/op"; }
ratio() { # a b: a/b, or n/a
	awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'
}
secs() { awk -v n="${1:-}" 'BEGIN { if (n == "") print "n/a"; else printf "%.2f", n / 1e9 }'; }
num() { awk -v n="${1:-}" -v f="${2:-%.0f}" 'BEGIN { if (n == "") print "n/a"; else printf f, n }'; }
row() { printf '  %-58s %s\n' "$1" "$2"; }

echo
echo "hyperfunc benchmarks ($(nproc) cores, $(go version | awk '{print $3}'), $(date -u +%Y-%m-%dT%H:%MZ)); raw output: $BENCH_OUT"
if [[ -z $ONLY || $ONLY == cluster ]]; then
	echo "1. committed enqueues, 3-node loopback cluster, BoltDB on disk (goal >= 5000/s at 64 clients)"
	for v in http raft; do
		for c in 1 64; do
			n="Enqueue/$v/clients=$c-"
			row "$v, $c client(s)" "$(num "$(metric "$n" enqueues/s)")/s  p50 $(metric "$n" p50-ms) ms  p99 $(metric "$n" p99-ms) ms"
		done
	done
	row "http: 64 clients / 1 client" "x$(ratio "$(metric 'Enqueue/http/clients=64-' enqueues/s)" "$(metric 'Enqueue/http/clients=1-' enqueues/s)")"
	row "64 clients: http (batched) / raft (one call per entry)" "x$(ratio "$(metric 'Enqueue/http/clients=64-' enqueues/s)" "$(metric 'Enqueue/raft/clients=64-' enqueues/s)")"
	echo "3. async calls accepted over HTTP, 64 clients spread over 3 nodes (goal >= 5000/s)"
	n='Accept/spread/clients=64-'
	row "spread over 3 nodes" "$(num "$(metric "$n" calls/s)")/s  p50 $(metric "$n" p50-ms) ms  p99 $(metric "$n" p99-ms) ms"
	row "spread / all to the leader" "x$(ratio "$(metric "$n" calls/s)" "$(metric 'Enqueue/http/clients=64-' enqueues/s)")"
fi
if [[ -z $ONLY || $ONLY == fsm ]]; then
	echo "2. a million queued calls (32 B stdin) in the FSM (goal: restore < 10 s)"
	row "snapshot persist" "$(secs "$(nsop 'Snapshot1M/persist')") s  ($(num "$(metric 'Snapshot1M/persist' snapshot-MiB)") MiB on disk)"
	row "snapshot restore" "$(secs "$(nsop 'Snapshot1M/restore')") s"
	row "heap per queued call" "$(num "$(metric 'MemoryPerCall/queued-1M' B/call)") B"
	row "heap per queued call without its 2 log events (100k)" "$(num "$(metric 'MemoryPerCall/queued-no-logs' B/call)") B"
	row "heap per finished call (no stdin, empty output)" "$(num "$(metric 'MemoryPerCall/finished' B/call)") B"
fi
if [[ -z $ONLY || $ONLY == cache ]]; then
	echo "5. one output insert into a full 50 MiB output cache (rotates one out)"
	for s in 1KiB 64KiB 1MiB; do
		row "cachestore.PutOutput, $s outputs" "$(num "$(nsop "CacheRotation/cachestore/size=$s-")" '%.0f') ns"
		row "whole CallFinish apply, $s stdout" "$(num "$(nsop "CacheRotation/fsm/size=$s-")" '%.0f') ns"
	done
fi
if [[ -z $ONLY || $ONLY == echo ]]; then
	echo "4. sync echo, cold: hyperfunc (1 node, local Docker, runsc) vs docker run --runtime=runsc (goal p50 ratio <= 1.05)"
	e='^bench:BenchmarkSyncEcho-'
	row "hyperfunc mean / p50" "$(metric "$e" hyperfunc-ms) / $(metric "$e" hyperfunc-p50-ms) ms"
	row "docker run mean / p50" "$(metric "$e" docker-ms) / $(metric "$e" docker-p50-ms) ms"
	row "ratio hyperfunc / docker run (mean, p50)" "$(metric "$e" ratio) / $(metric "$e" p50-ratio)"
	row "cold breakdown p50: enqueue / dispatch / exec start / run / finish" "$(metric "$e" enqueue-p50-ms) / $(metric "$e" start-p50-ms) / $(metric "$e" exec-start-p50-ms) / $(metric "$e" run-p50-ms) (incl. exec start) / $(metric "$e" finish-p50-ms) ms"
	w='^bench:BenchmarkSyncEchoWarm-'
	echo "4w. sync echo with --warm 2 (a pre-started sandbox per call) vs docker run, interleaved (goal p50 ratio <= 0.25)"
	row "hyperfunc warm mean / p50" "$(metric "$w" hyperfunc-ms) / $(metric "$w" hyperfunc-p50-ms) ms ($(metric "$w" warm-hits) warm hits)"
	row "docker run mean / p50" "$(metric "$w" docker-ms) / $(metric "$w" docker-p50-ms) ms"
	row "ratio warm / docker run (mean, p50)" "$(metric "$w" ratio) / $(metric "$w" p50-ratio)"
	row "warm breakdown p50: enqueue / dispatch / exec start / run / finish" "$(metric "$w" enqueue-p50-ms) / $(metric "$w" start-p50-ms) / $(metric "$w" exec-start-p50-ms) / $(metric "$w" run-p50-ms) (incl. exec start) / $(metric "$w" finish-p50-ms) ms"
	x=$(nsop '^localexec:BenchmarkSyncEcho-')
	d=$(nsop '^localexec:BenchmarkDockerRunRunsc-')
	row "executor alone (localexec) / docker run, in sequence" "$(secs "$x") s / $(secs "$d") s = $(ratio "$x" "$d")"
fi
if [[ -z $ONLY || $ONLY == nomad ]]; then
	target="the Nomad double (set NOMAD_ADDR for a real Nomad)"
	[[ -n ${NOMAD_ADDR:-} ]] && target="Nomad at $NOMAD_ADDR"
	echo "6. calls through the frontend vs raw dispatch of the same job, on $target (goal ratio <= 1.05 on a real Nomad)"
	for mode in hostvolume artifact; do
		l="^nomadjob:BenchmarkNomadLatency/$mode-"
		[[ -n $(metric "$l" ratio) ]] || continue
		row "shim $mode: p50 raw dispatch / through hyperfunc" "$(metric "$l" raw-p50-ms) / $(metric "$l" frontend-p50-ms) ms, ratio $(metric "$l" ratio)"
		t="^nomadjob:BenchmarkNomadThroughput/$mode-"
		row "shim $mode: calls/s at concurrency 10, raw / hyperfunc" "$(metric "$t" raw-calls/s) / $(metric "$t" frontend-calls/s), ratio $(metric "$t" ratio)"
	done
	w="^nomadjob:BenchmarkNomadWarm-"
	if [[ -n $(metric "$w" ratio) ]]; then
		row "warm (--warm 2): p50 raw dispatch / sync call through hyperfunc (goal ratio <= 0.3)" "$(metric "$w" raw-p50-ms) / $(metric "$w" warm-p50-ms) ms, ratio $(metric "$w" ratio) ($(metric "$w" hits) hits, $(metric "$w" misses) misses)"
		row "warm breakdown p50: claim / deliver (render + SIGUSR1) / command / collect" "$(metric "$w" claim-p50-ms) / $(metric "$w" deliver-p50-ms) / $(metric "$w" command-p50-ms) / $(metric "$w" collect-p50-ms) ms"
	fi
fi
if [[ -z $ONLY || $ONLY == memory ]]; then
	echo "7. memory and Raft entry sizes, 3 agent processes (issue 12; docs/BENCHMARKS.md explains the lines)"
	grep '^MEM ' "$BENCH_OUT" | sed 's/^MEM /  /' || echo "  no MEM lines: see $BENCH_OUT"
fi
