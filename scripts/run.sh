#!/usr/bin/env bash
# The README's main command: installs what is missing, builds the binary if
# needed, starts the node(s) in the background, waits until they are ready,
# prepares a small demo city (a transit operator wallet and a social-fund
# agency wallet, keys in $CITYLEDGER_DATA/keys/) and prints the URL and
# copy-paste commands that work as printed from the repository root.
#
# Usage:
#   scripts/run.sh            run in the foreground; Ctrl-C (or SIGTERM) stops the node(s) cleanly
#   scripts/run.sh --detach   start, print, return (the node keeps running)
#   scripts/run.sh --stop     stop the node(s) started with --detach
#
# Environment (relative paths are relative to the repository root):
#   CITYLEDGER_CONFIG   node config file(s), space-separated (default config/single.json)
#   CITYLEDGER_DATA     logs, pid files and demo keys (default data): logs in $CITYLEDGER_DATA/logs/
#                       (each node keeps its ledger in the data_dir of its config)
#   CITYLEDGER_BUILD    CMake build directory whose cli/cityledger is run (default build)
#   CITYLEDGER_REBUILD  1 (default): bring the binary up to date (an incremental build);
#                       0: build only when the binary is missing
set -euo pipefail
cd "$(dirname "$0")/.."

# The nodes this script runs: one config file per node.
read -r -a NODE_CONFIGS <<<"${CITYLEDGER_CONFIG:-config/node1.json config/node2.json config/node3.json}"
DATA=${CITYLEDGER_DATA:-data}
BUILD=${CITYLEDGER_BUILD:-build}
REBUILD=${CITYLEDGER_REBUILD:-1}
BIN=$BUILD/cli/cityledger
# How long a node may take to become ready, and to stop after SIGTERM.
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=30
# The demo agency is topped up to keep at least this much (kopecks).
AGENCY_FLOOR_KOPECKS=10000000      # 100,000 ₽
AGENCY_TOPUP_KOPECKS=100000000     # 1,000,000 ₽

LOG_DIR=$DATA/logs
PID_DIR=$DATA/run
KEY_DIR=$DATA/keys

usage() {
  echo "usage: scripts/run.sh [--detach | --stop]" >&2
  exit 2
}

mode=foreground
case "${1:-}" in
  "") ;;
  --detach) mode=detach ;;
  --stop) mode=stop ;;
  *) usage ;;
esac
[ $# -le 1 ] || usage

# --- processes -----------------------------------------------------------

# True if process "pid" exists and has not exited (a zombie has).
process_alive() {
  local stat state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }
  [ "${state%% *}" != Z ]
}

# True if "pid" is a live `cityledger node` process.
node_alive() {
  process_alive "$1" && { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -q " node --config "
}

# Stops the node whose pid file is "$1": SIGTERM, then waits for it to finish
# every admitted op and exit (SIGKILL only if it has not after STOP_TIMEOUT_S).
stop_node() {
  local pidfile=$1 pid name
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -z "$pid" ] || ! node_alive "$pid"; then
    echo "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while node_alive "$pid"; do
    if [ $waited -ge $((STOP_TIMEOUT_S * 10)) ]; then
      echo "$name: still running ${STOP_TIMEOUT_S}s after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true  # reap it if it is our child
  rm -f "$pidfile"
  echo "$name: stopped (pid $pid)"
}

stop_all() {
  local found=0 f
  for f in "$PID_DIR"/*.pid; do
    [ -e "$f" ] || continue
    found=1
    stop_node "$f"
  done
  [ $found = 1 ] || echo "no node is running (no pid file in $PID_DIR)"
}

if [ $mode = stop ]; then
  stop_all
  exit 0
fi

# --- install and build ---------------------------------------------------

bash scripts/setup.sh

# Ninja rebuilds only what changed, so this is quick when nothing did.
if [ ! -x "$BIN" ] || [ "$REBUILD" = 1 ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    echo "== configure $BUILD =="
    cmake -S . -B "$BUILD" -G Ninja >/dev/null
  fi
  echo "== build $BIN =="
  cmake --build "$BUILD" --target cityledger
fi
[ -x "$BIN" ] || { echo "error: $BIN was not built" >&2; exit 1; }

# Git does not keep file modes; a node refuses a key file others can read.
chmod 600 config/demo/*.key

# --- start ---------------------------------------------------------------

# Prints "<node_id> <api host:port> <genesis path>" of a node config.
config_fields() {
  python3 - "$1" <<'EOF'
import json, os, sys
path = sys.argv[1]
c = json.load(open(path))
base = os.path.dirname(os.path.abspath(path))
print(c["node_id"], c["api"], os.path.join(base, c["genesis"]))
EOF
}

# The URL clients use for an "api" listen address (0.0.0.0 → 127.0.0.1).
api_url() {
  local hostport=$1
  local host=${hostport%:*} port=${hostport##*:}
  case "$host" in 0.0.0.0 | "" | "*") host=127.0.0.1 ;; esac
  echo "http://$host:$port"
}

mkdir -p "$LOG_DIR" "$PID_DIR" "$KEY_DIR"
for cfg in "${NODE_CONFIGS[@]}"; do
  [ -f "$cfg" ] || { echo "error: no config file $cfg" >&2; exit 1; }
done

for f in "$PID_DIR"/*.pid; do
  [ -e "$f" ] || continue
  old=$(cat "$f" 2>/dev/null || true)
  if [ -n "$old" ] && node_alive "$old"; then
    echo "error: $(basename "$f" .pid) is already running (pid $old); stop it with scripts/run.sh --stop" >&2
    exit 1
  fi
  rm -f "$f"
done

# From here on, Ctrl-C or SIGTERM stops every node this script started, cleanly.
on_signal() {
  trap - INT TERM
  echo
  stop_all
  exit 0
}
trap on_signal INT TERM

urls=()
pids=()
names=()
launchers=()
chain=""
for cfg in "${NODE_CONFIGS[@]}"; do
  fields=$(config_fields "$cfg") || { echo "error: cannot read $cfg" >&2; exit 1; }
  read -r node_id api genesis <<<"$fields"
  name=node-$node_id
  pidfile=$PID_DIR/$name.pid
  [ -n "$chain" ] || chain=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chain"])' "$genesis")
  log=$LOG_DIR/$name.log
  echo "== start $name ($cfg), log $log =="
  # Its own session, so that the terminal's Ctrl-C reaches only this script
  # (which then stops the node with SIGTERM) and --detach leaves it running.
  setsid bash -c 'echo $$ >"$0"; exec "$1" node --config "$2"' "$pidfile" "$BIN" "$cfg" \
    >>"$log" 2>&1 </dev/null &
  launchers+=($!)
  urls+=("$(api_url "$api")")
  names+=("$name")
done

# Waits until every node answers /readyz with 200.
for i in "${!names[@]}"; do
  name=${names[$i]} url=${urls[$i]}
  deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -sf -o /dev/null --max-time 1 "$url/readyz"; do
    pid=$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)
    alive=0
    if [ -n "$pid" ]; then
      node_alive "$pid" && alive=1
    else
      process_alive "${launchers[$i]}" && alive=1  # the pid file is not written yet
    fi
    if [ $alive = 0 ] || [ $SECONDS -ge $deadline ]; then
      echo "error: $name did not become ready at $url; last lines of $LOG_DIR/$name.log:" >&2
      tail -n 20 "$LOG_DIR/$name.log" >&2 || true
      stop_all >&2
      exit 1
    fi
    sleep 0.1
  done
  pids+=("$(cat "$PID_DIR/$name.pid")")
done
URL=${urls[0]}

# --- demo city: a transit operator and a social-fund agency ---------------

new_id() { tr -d - </proc/sys/kernel/random/uuid; }
public_key() { sed 's/.*"public":"\([0-9a-f]*\)".*/\1/' "$1"; }

# Submits the body "$1" signed with the key files "${@:2}"; quiet unless it fails.
submit_signed() {
  local body=$1 out
  shift
  local keys=()
  for k in "$@"; do keys+=(--key "$k"); done
  if ! out=$(printf '%s' "$body" | "$BIN" sign "${keys[@]}" | "$BIN" submit --node "$URL"); then
    echo "error: could not submit $body: $out" >&2
    return 1
  fi
}

# Ensures the city wallet "$1" of kind "$2" exists; its key and id are kept
# in $KEY_DIR/$1.key and $KEY_DIR/$1.id so later runs reuse them.
ensure_wallet() {
  local name=$1 kind=$2 key=$KEY_DIR/$1.key idfile=$KEY_DIR/$1.id
  [ -f "$key" ] || "$BIN" wallet new --out "$key" >/dev/null
  if [ -f "$idfile" ] && curl -sfL -o /dev/null "$URL/v1/wallets/$(cat "$idfile")"; then
    return 0
  fi
  local id
  id=$(new_id)
  submit_signed "{\"chain\":\"$chain\",\"id\":\"$(new_id)\",\"type\":\"open_wallet\",\"wallet\":\"$id\",\"kind\":\"$kind\",\"key\":\"$(public_key "$key")\"}" \
    config/demo/registrar.key "$key"
  echo "$id" >"$idfile"
  echo "opened the $kind wallet $name: $id"
}

ensure_wallet metro transit
ensure_wallet agency agency
METRO=$(cat "$KEY_DIR/metro.id")
AGENCY=$(cat "$KEY_DIR/agency.id")
agency_balance=$(curl -sfL "$URL/v1/wallets/$AGENCY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"])')
if [ "$agency_balance" -lt $AGENCY_FLOOR_KOPECKS ]; then
  submit_signed "{\"chain\":\"$chain\",\"id\":\"$(new_id)\",\"type\":\"issue\",\"to\":\"$AGENCY\",\"amount\":$AGENCY_TOPUP_KOPECKS}" \
    config/demo/issuer.key
  echo "the issuer topped up the agency wallet with $(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<$((AGENCY_TOPUP_KOPECKS / 100))) ₽"
fi

# --- what to try ---------------------------------------------------------

# Paths as the user types them from the repository root.
show() { local p=$1; echo "${p#"$PWD"/}"; }
CL=$(show "$BIN")
RIDER=$(new_id)
RIDER_KEY=$(show "$KEY_DIR")/rider-${RIDER:0:8}.key
AGENCY_KEY=$(show "$KEY_DIR")/agency.key
REFERENCE=birth-2026-$(printf '%06d' $(((RANDOM << 15 | RANDOM) % 1000000)))
OPID='$(tr -d - </proc/sys/kernel/random/uuid)'

cat <<EOF

cityledger is up: $URL   (${names[*]}: pid ${pids[*]}; logs in $(show "$LOG_DIR")/)
chain "$chain"; demo transit operator wallet $METRO, demo agency wallet $AGENCY

Try it from the repository root (each line is one command; every op gets a fresh id):
--- commands ---
# a rider's fresh key, then the wallet, signed by the registrar and by that key
$CL wallet new --out $RIDER_KEY
echo '{"chain":"$chain","id":"'$OPID'","type":"open_wallet","wallet":"$RIDER","kind":"personal","key":"'\$(sed 's/.*"public":"\([0-9a-f]*\)".*/\1/' $RIDER_KEY)'"}' | $CL sign --key config/demo/registrar.key --key $RIDER_KEY | $CL submit --node $URL
# the issuer tops the rider up with 500 ₽ (amounts are kopecks)
echo '{"chain":"$chain","id":"'$OPID'","type":"issue","to":"$RIDER","amount":50000}' | $CL sign --key config/demo/issuer.key | $CL submit --node $URL
# the rider pays a 66 ₽ fare at a metro gate, into the transit operator's wallet
echo '{"chain":"$chain","id":"'$OPID'","type":"fare","from":"$RIDER","to":"$METRO","amount":6600,"gate":"Охотный Ряд, турникет 3","tap_at":'\$(date +%s%3N)'}' | $CL sign --key $RIDER_KEY | $CL submit --node $URL
# the social fund pays a birth benefit; the same (program, reference) is never paid twice
echo '{"chain":"$chain","id":"'$OPID'","type":"payout","from":"$AGENCY","to":"$RIDER","amount":2460400,"program":"birth-benefit","reference":"$REFERENCE"}' | $CL sign --key $AGENCY_KEY | $CL submit --node $URL
# the rider's balance, history, and the money supply
curl -sSL --fail-with-body -w '\n' $URL/v1/wallets/$RIDER
curl -sSL --fail-with-body -w '\n' $URL/v1/wallets/$RIDER/entries
curl -sS --fail-with-body -w '\n' $URL/v1/supply
--- end ---

A scripted city morning: scripts/demo.sh $URL
API description: api/openapi.yaml
EOF

if [ $mode = detach ]; then
  trap - INT TERM
  echo "Stop it with: scripts/run.sh --stop"
  exit 0
fi

echo "Press Ctrl-C to stop."
while :; do
  for i in "${!pids[@]}"; do
    if ! node_alive "${pids[$i]}"; then
      echo "error: ${names[$i]} exited unexpectedly; last lines of $LOG_DIR/${names[$i]}.log:" >&2
      tail -n 20 "$LOG_DIR/${names[$i]}.log" >&2 || true
      trap - INT TERM
      stop_all >&2
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
