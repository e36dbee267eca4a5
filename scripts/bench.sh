#!/usr/bin/env bash
# The benchmark suite: a city rush hour against cityledger (1 node and a
# 3-node cluster) and against PostgreSQL 15 running the same ledger semantics,
# all in one run on this machine, with the machine's ceilings measured in the
# same run.  Results: bench-results/<date>.json, a Markdown table and PNG plots.
#
# Usage:
#   scripts/bench.sh                 the full suite (about 10 minutes on 2 cores)
#   scripts/bench.sh --smoke         every part for a few seconds (run by ctest)
# Options:
#   --out DIR                results directory (default bench-results)
#   --growth-entries N       grow the journal to N entries in the growth part (default 2000000;
#                            10000000 for the 10M figure, about 10 more minutes)
#   --port-base P            loopback ports P..P+99 for the nodes and PostgreSQL (default 17000)
#   --only PARTS             comma-separated subset of: ceilings,one,three,postgres,growth
#   --keep                   keep the work directory (data, logs) instead of removing it
# Environment: CITYLEDGER_BUILD (default build), CITYLEDGER_REBUILD (1: incremental build first).
#
# Everything it starts (nodes, PostgreSQL) listens on 127.0.0.1 only, lives in
# a fresh work directory, and is stopped when the script exits, even on error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

smoke=0
out=bench-results
growth_entries=2000000
port_base=17000
only=ceilings,one,three,postgres,growth
keep=0
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out=$2; shift ;;
    --growth-entries) growth_entries=$2; shift ;;
    --port-base) port_base=$2; shift ;;
    --only) only=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help) usage ;;
    *) echo "bench.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
part() { [[ ",$only," == *",$1,"* ]]; }

BUILD=${CITYLEDGER_BUILD:-build}
REBUILD=${CITYLEDGER_REBUILD:-1}
BIN=$ROOT/$BUILD/cli/cityledger
case "$BUILD" in /*) BIN=$BUILD/cli/cityledger ;; esac

# Load shape.  The full run sweeps open-loop rates from 10% to 110% of the
# measured peak, 5 s per rate; the smoke run does each part for about a second.
if [ $smoke = 1 ]; then
  WALLETS=2000 CONNECTIONS=16 DURATION=1 PEAK_SECONDS=1 MEASURE_SECONDS=1
  growth_entries=20000
else
  WALLETS=100000 CONNECTIONS=64 DURATION=5 PEAK_SECONDS=5 MEASURE_SECONDS=5
fi

bash scripts/setup.sh
if [ ! -x "$BIN" ] || [ "$REBUILD" = 1 ]; then
  [ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" --target cityledger
fi

WORK=$(mktemp -d /tmp/cityledger-bench.XXXXXX)
chmod 755 "$WORK"  # PostgreSQL's own user must reach its data directory
RESULTS=$WORK/results
mkdir -p "$RESULTS"
started_runs=()
pg_started=0
PG_BIN=/usr/lib/postgresql/15/bin

cleanup() {
  local rc=$?
  for run in "${started_runs[@]}"; do stop_nodes "$run" >/dev/null 2>&1 || true; done
  [ $pg_started = 0 ] || as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
  if [ $keep = 1 ] || [ $rc != 0 ]; then
    echo "bench.sh: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== bench: $* ==" >&2; }

# --- nodes -----------------------------------------------------------------

# Writes configs for an n-node cluster "run" into $WORK/<run>/config (genesis
# and keys of the demo chain, ports from port_base + offset).
write_cluster_configs() {
  local run=$1 n=$2 offset=$3 dir=$WORK/$1/config
  mkdir -p "$dir/demo"
  cp config/genesis.json "$dir/"
  cp config/demo/*.key "$dir/demo/"
  chmod 600 "$dir"/demo/*.key
  python3 - "$dir" "$n" $((port_base + offset)) <<'EOF'
import json, sys
d, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
peers = [{"id": i, "raft": f"127.0.0.1:{base + 10 + i}", "api": f"127.0.0.1:{base + i}"} for i in range(1, n + 1)]
for p in peers:
    i = p["id"]
    cfg = {"node_id": i, "data_dir": f"../data/node{i}", "key_file": f"demo/node{i}.key",
           "genesis": "genesis.json", "api": p["api"], "raft": p["raft"], "peers": peers, "log_level": "warn"}
    json.dump(cfg, open(f"{d}/node{i}.json", "w"), indent=2)
EOF
}

# Starts the cluster "run" with scripts/run.sh (which waits until it is ready).
start_nodes() {
  local run=$1 n=$2 configs=()
  for i in $(seq 1 "$n"); do configs+=("$WORK/$run/config/node$i.json"); done
  started_runs+=("$run")
  CITYLEDGER_CONFIG="${configs[*]}" CITYLEDGER_DATA="$WORK/$run" CITYLEDGER_BUILD="$BUILD" CITYLEDGER_REBUILD=0 \
    bash scripts/run.sh --detach >"$WORK/$run/run.out" 2>&1 || {
    cat "$WORK/$run/run.out" >&2
    return 1
  }
}

stop_nodes() {
  CITYLEDGER_DATA="$WORK/$1" bash scripts/run.sh --stop
}

# Peak resident memory (VmHWM, kB) of every node of "run": {"node-1": kB, ...}.
nodes_peak_rss() {
  local run=$1 first=1 f pid name
  printf '{'
  for f in "$WORK/$run"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    name=$(basename "$f" .pid)
    [ $first = 1 ] || printf ','
    first=0
    printf '"%s":%s' "$name" "$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo null)"
  done
  printf '}'
}

rush_args=(--wallets "$WALLETS" --connections "$CONNECTIONS" --duration "$DURATION" --peak-seconds "$PEAK_SECONDS" --json)

# The open-loop rates PostgreSQL sustained (accepted >= 90% of offered, no
# errors), comma-separated: cityledger sweeps them too.
pg_sustained_rates() {
  python3 - "$RESULTS/postgres.json" <<'EOF'
import json, sys
steps = json.load(open(sys.argv[1])).get("steps", [])
print(",".join(f"{s['offered_rate']:.0f}" for s in steps
               if s.get("mode") == "open_loop" and s.get("offered_rate", 0) > 0
               and s.get("accepted_per_sec", 0) >= 0.9 * s["offered_rate"] and s.get("errors", 0) == 0))
EOF
}

# cityledger, n nodes: the rush-hour mix, then each node's peak RSS.
bench_cluster() {
  local run=$1 n=$2 offset=$3
  log "cityledger, $n node(s): rush hour over $WALLETS wallets"
  write_cluster_configs "$run" "$n" "$offset"
  start_nodes "$run" "$n"
  local also=() rates=""
  [ ! -s "$RESULTS/postgres.json" ] || rates=$(pg_sustained_rates)
  [ -z "$rates" ] || also=(--also-rates "$rates")
  "$BIN" bench rush --target cityledger --node "http://127.0.0.1:$((port_base + offset + 1))" \
    --registrar-key config/demo/registrar.key --issuer-key config/demo/issuer.key "${rush_args[@]}" "${also[@]}" \
    >"$RESULTS/$run.json"
  nodes_peak_rss "$run" >"$RESULTS/$run-rss.json"
  stop_nodes "$run" >&2
}

# --- PostgreSQL ------------------------------------------------------------

# Runs a PostgreSQL program as its own OS user (it refuses to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bench_postgres() {
  local port=$((port_base + 50)) dir=$WORK/pg
  log "PostgreSQL 15 (synchronous_commit=on, fsync=on; verifies no signatures): the same rush hour"
  mkdir -p "$dir"
  [ "$(id -u)" != 0 ] || chown postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  pg_started=1
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB" \
    start >&2
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres cityledger
  "$BIN" bench rush --target postgres --pg "host=127.0.0.1 port=$port dbname=cityledger user=postgres" \
    "${rush_args[@]}" >"$RESULTS/postgres.json"
  local pids
  pids=$(pgrep -u postgres -f "$dir/data" || true)
  echo "{\"postmaster_pids\":\"$pids\"}" >"$RESULTS/postgres-info.json"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast stop >&2
  pg_started=0
}

# --- run -------------------------------------------------------------------

t0=$SECONDS
if part ceilings; then
  log "ceilings: Ed25519 verify on all cores, synced RocksDB writes of 1,000-op batches"
  if [ $smoke = 1 ]; then "$BIN" bench ceilings --json --seconds 1 >"$RESULTS/ceilings.json"
  else "$BIN" bench ceilings --json >"$RESULTS/ceilings.json"; fi
fi
# PostgreSQL first: cityledger then also sweeps the rates PostgreSQL
# sustained, so that the report compares p99 at equal offered loads.
part postgres && bench_postgres
part one && bench_cluster one 1 0
part three && bench_cluster three 3 20
if part growth; then
  log "growth: fares as the journal grows to $growth_entries entries (one node)"
  write_cluster_configs growth 1 70
  start_nodes growth 1
  # The 10M-entry run uses 1M riders (the RSS target is stated at 10M entries / 1M wallets).
  growth_riders=$WALLETS
  [ "$growth_entries" -lt 10000000 ] || growth_riders=1000000
  "$BIN" bench growth --node "http://127.0.0.1:$((port_base + 71))" --entries "$growth_entries" \
    --riders "$growth_riders" --registrar-key config/demo/registrar.key --issuer-key config/demo/issuer.key \
    --measure-seconds "$MEASURE_SECONDS" --peak-seconds "$PEAK_SECONDS" --json >"$RESULTS/growth.json"
  nodes_peak_rss growth >"$RESULTS/growth-rss.json"
  stop_nodes growth >&2
fi

log "report"
date_tag=$(date -u +%Y-%m-%dT%H%M%SZ)
[ $smoke = 0 ] || date_tag="smoke-$date_tag"
mkdir -p "$out"
python3 scripts/bench_report.py --results "$RESULTS" --out "$out" --tag "$date_tag" --seconds $((SECONDS - t0)) \
  $([ $smoke = 1 ] && echo --smoke)
