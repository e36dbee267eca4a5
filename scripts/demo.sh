#!/usr/bin/env bash
# A scripted city morning against a running node, told in plain words:
# the registrar opens wallets, the issuer tops them up, gates post fares, the
# social fund pays birth benefits exactly once (a retry and a duplicate are
# shown), a frozen wallet and an empty one are refused, the metro withdraws
# its takings.  Then it checks every balance and that the money supply moved
# by exactly what it issued and redeemed.  Exits non-zero on anything
# unexpected.  Safe to run again and again against the same node: every run
# uses fresh wallet ids, op ids, keys and references.
#
# Usage: scripts/demo.sh [URL]     (default $CITYLEDGER_URL, else http://127.0.0.1:8081)
# Start a node first: scripts/run.sh (or scripts/run.sh --detach).
# Environment: CITYLEDGER_BUILD, the CMake build directory (default build).
set -euo pipefail
cd "$(dirname "$0")/.."

URL=${1:-${CITYLEDGER_URL:-http://127.0.0.1:8081}}
URL=${URL%/}
CL=${CITYLEDGER_BUILD:-build}/cli/cityledger
REGISTRAR_KEY=config/demo/registrar.key
ISSUER_KEY=config/demo/issuer.key

FARE=6600              # 66.00 ₽
BIRTH_BENEFIT=2460400  # 24,604.00 ₽

fail() {
  echo >&2
  echo "UNEXPECTED: $*" >&2
  exit 1
}

[ -x "$CL" ] || fail "no $CL; build it first (scripts/run.sh builds it)"
curl -sf -o /dev/null --max-time 5 "$URL/readyz" || fail "no ready node at $URL; start one with scripts/run.sh"
# Git does not keep file modes; `sign` refuses a key file others can read.
chmod 600 config/demo/*.key

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- helpers --------------------------------------------------------------

new_id() { tr -d - </proc/sys/kernel/random/uuid; }
now_ms() { date +%s%3N; }

# Evaluates the Python expression "$1" on the JSON document "$2" (as d).
py() {
  python3 -c 'import json, sys
d = json.loads(sys.argv[2])
v = eval(sys.argv[1])
print(json.dumps(v, ensure_ascii=False) if isinstance(v, (bool, type(None), dict, list)) else v)' "$1" "$2"
}

# 123456 → "1,234.56 ₽"
rub() {
  printf '%s.%02d ₽' "$(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<$(($1 / 100)))" $(($1 % 100))
}

get() { curl -sSL --fail-with-body --max-time 10 "$URL$1"; }

# sign BODY KEYFILE... → the signed envelope
sign() {
  local body=$1 keys=()
  shift
  for k in "$@"; do keys+=(--key "$k"); done
  printf '%s' "$body" | "$CL" sign "${keys[@]}"
}

# submit ENVELOPE-OR-ARRAY: sets OUT (what the node answered) and RC (submit's exit code).
submit() {
  [ -n "$1" ] || fail "nothing to submit (signing failed?)"
  RC=0
  OUT=$(printf '%s' "$1" | "$CL" submit --node "$URL" 2>"$WORK/submit.err") || RC=$?
  [ -n "$OUT" ] || fail "no answer from $URL: $(cat "$WORK/submit.err")"
}

# Submits one op that must be accepted; prints nothing, leaves the receipt in OUT.
submit_ok() {
  submit "$1"
  [ "$RC" = 0 ] && [ "$(py 'd.get("result")' "$OUT")" = ok ] || fail "op refused: $OUT"
}

# Submits one op that must be refused with code "$2".
submit_refused() {
  submit "$1"
  local code
  code=$(py 'd.get("code")' "$OUT")
  [ "$RC" != 0 ] && [ "$code" = "$2" ] || fail "expected $2, got: $OUT"
}

# Submits a batch (array of envelopes) whose every op must be accepted.
submit_batch_ok() {
  local IFS=,
  submit "[$*]"
  [ "$RC" = 0 ] && [ "$(py 'all(r["result"] == "ok" for r in d["results"])' "$OUT")" = true ] ||
    fail "a batch op was refused: $OUT"
}

# --- the people and organisations of the morning -----------------------------

declare -A WID KEY KIND EXPECT LABEL
NAMES=()
ISSUED=0
REDEEMED=0

# new_wallet NAME KIND LABEL: a fresh key and wallet id; appends the signed
# open_wallet envelope (registrar and the new key) to OPENS.
OPENS=()
new_wallet() {
  local name=$1 kind=$2 pub
  KEY[$name]=$WORK/$name.key
  "$CL" wallet new --out "${KEY[$name]}" >/dev/null
  pub=$(sed 's/.*"public":"\([0-9a-f]*\)".*/\1/' "${KEY[$name]}")
  WID[$name]=$(new_id)
  KIND[$name]=$kind
  LABEL[$name]=$3
  EXPECT[$name]=0
  NAMES+=("$name")
  OPENS+=("$(sign "{\"chain\":\"$CHAIN\",\"id\":\"$(new_id)\",\"type\":\"open_wallet\",\"wallet\":\"${WID[$name]}\",\"kind\":\"$kind\",\"key\":\"$pub\"}" \
    "$REGISTRAR_KEY" "${KEY[$name]}")")
}

issue_env() {
  sign "{\"chain\":\"$CHAIN\",\"id\":\"$(new_id)\",\"type\":\"issue\",\"to\":\"${WID[$1]}\",\"amount\":$2}" "$ISSUER_KEY"
}

# fare_env RIDER GATE [AMOUNT]
fare_env() {
  sign "{\"chain\":\"$CHAIN\",\"id\":\"$(new_id)\",\"type\":\"fare\",\"from\":\"${WID[$1]}\",\"to\":\"${WID[metro]}\",\"amount\":${3:-$FARE},\"gate\":\"$2\",\"tap_at\":$(now_ms)}" \
    "${KEY[$1]}"
}

# payout_env TO REFERENCE [OP_ID]
payout_env() {
  sign "{\"chain\":\"$CHAIN\",\"id\":\"${3:-$(new_id)}\",\"type\":\"payout\",\"from\":\"${WID[fund]}\",\"to\":\"${WID[$1]}\",\"amount\":$BIRTH_BENEFIT,\"program\":\"birth-benefit\",\"reference\":\"$2\"}" \
    "${KEY[fund]}"
}

# A benefit reference like birth-2026-000123, random enough never to repeat.
new_reference() {
  local h
  h=$(new_id)
  printf 'birth-2026-%012d' $((16#${h:0:12} % 1000000000000))
}

# --- the morning -----------------------------------------------------------

CHAIN=$(py 'd["chain"]' "$(get /v1/checkpoint)")
SUPPLY0=$(get /v1/supply)
echo "A city morning on chain \"$CHAIN\" at $URL"
echo "  money supply before: issued $(rub "$(py 'd["issued"]' "$SUPPLY0")"), redeemed $(rub "$(py 'd["redeemed"]' "$SUPPLY0")"), outstanding $(rub "$(py 'd["outstanding"]' "$SUPPLY0")")"
echo

echo "06:00  The registrar opens wallets, each signed by the registrar and by the owner's new key (one batch):"
new_wallet anna personal 'Anna (rider)'
new_wallet boris personal 'Boris (rider)'
new_wallet vera personal 'Vera (rider)'
new_wallet dmitry personal 'Dmitry (rider)'
new_wallet grigory personal 'Grigory (rider)'
new_wallet elena personal 'Elena (new mother)'
new_wallet metro transit 'Metro (transit operator)'
new_wallet fund agency 'Social fund (agency)'
submit_batch_ok "${OPENS[@]}"
for name in "${NAMES[@]}"; do
  printf '         %-26s %-8s %s\n' "${LABEL[$name]}" "${KIND[$name]}" "${WID[$name]}"
done
echo "       → all ${#OPENS[@]} opened, journal entries $(py 'str(d["results"][0]["index"]) + ".." + str(d["results"][-1]["index"])' "$OUT")"

echo "06:30  The issuer (the central bank) tops up the riders and the social fund (one batch):"
declare -A TOPUP=([anna]=150000 [boris]=100000 [vera]=50000 [dmitry]=30000 [grigory]=2000 [fund]=10000000)
issues=()
for name in anna boris vera dmitry grigory fund; do
  issues+=("$(issue_env "$name" "${TOPUP[$name]}")")
  printf '         %-26s +%s\n' "${LABEL[$name]}" "$(rub "${TOPUP[$name]}")"
done
submit_batch_ok "${issues[@]}"
for name in anna boris vera dmitry grigory fund; do
  EXPECT[$name]=$((EXPECT[$name] + TOPUP[$name]))
  ISSUED=$((ISSUED + TOPUP[$name]))
done
echo "       → issued $(rub $ISSUED) in new money"

echo "07:30  Morning rush: the gates post fares of $(rub $FARE) into the metro's wallet (one batch):"
fares=()
rides=("anna|Охотный Ряд, турникет 3" "boris|Komsomolskaya gate 12" "vera|Kitay-Gorod gate 5"
       "anna|Park Kultury gate 2" "dmitry|Tverskaya gate 7")
for ride in "${rides[@]}"; do
  rider=${ride%%|*} gate=${ride#*|}
  fares+=("$(fare_env "$rider" "$gate")")
  EXPECT[$rider]=$((EXPECT[$rider] - FARE))
  EXPECT[metro]=$((EXPECT[metro] + FARE))
  printf '         %-26s taps at "%s"\n' "${LABEL[$rider]}" "$gate"
done
submit_batch_ok "${fares[@]}"
echo "       → ${#fares[@]} fares paid; the metro has taken $(rub "${EXPECT[metro]}")"

echo "09:00  The social fund pays birth benefits of $(rub $BIRTH_BENEFIT) (program \"birth-benefit\"):"
REF_ELENA=$(new_reference)
REF_ANNA=$(new_reference)
ELENA_OP=$(new_id)
ELENA_PAYOUT=$(payout_env elena "$REF_ELENA" "$ELENA_OP")
submit_ok "$ELENA_PAYOUT"
ELENA_INDEX=$(py 'd["index"]' "$OUT")
[ "$(py 'd["replay"]' "$OUT")" = false ] || fail "a first payout came back as a replay: $OUT"
echo "         to Elena, reference $REF_ELENA → paid, journal entry $ELENA_INDEX"
submit_ok "$(payout_env anna "$REF_ANNA")"
echo "         to Anna,  reference $REF_ANNA → paid, journal entry $(py 'd["index"]' "$OUT")"
EXPECT[fund]=$((EXPECT[fund] - 2 * BIRTH_BENEFIT))
EXPECT[elena]=$((EXPECT[elena] + BIRTH_BENEFIT))
EXPECT[anna]=$((EXPECT[anna] + BIRTH_BENEFIT))

echo "09:05  The fund's connection dropped before it saw Elena's receipt, so it retries the same op (same id):"
submit_ok "$ELENA_PAYOUT"
[ "$(py 'd["replay"]' "$OUT")" = true ] || fail "the retry was not marked as a replay: $OUT"
[ "$(py 'd["index"]' "$OUT")" = "$ELENA_INDEX" ] || fail "the retry got another journal entry: $OUT"
[ "$(py 'd["index"]' "$(get "/v1/ops/$ELENA_OP")")" = "$ELENA_INDEX" ] || fail "GET /v1/ops/$ELENA_OP disagrees"
echo "       → the node returned the original receipt (entry $ELENA_INDEX, replay: true): paid once"

echo "09:10  A clerk re-enters Elena's benefit as a new op (new id, same reference):"
submit_refused "$(payout_env elena "$REF_ELENA")" reference_used
echo "       → refused: reference_used (HTTP $(py 'd["status"]' "$OUT")): $(py 'd["detail"]' "$OUT")"

echo "10:00  Dmitry reports his phone stolen; the registrar freezes his wallet:"
submit_ok "$(sign "{\"chain\":\"$CHAIN\",\"id\":\"$(new_id)\",\"type\":\"freeze\",\"wallet\":\"${WID[dmitry]}\",\"reason\":\"phone reported stolen\"}" "$REGISTRAR_KEY")"
echo "       → frozen (journal entry $(py 'd["index"]' "$OUT"))"
echo "10:05  Someone taps a gate with Dmitry's phone:"
submit_refused "$(fare_env dmitry 'Tverskaya gate 7')" wallet_frozen
echo "       → refused: wallet_frozen; nothing moved"

echo "10:20  Grigory, with $(rub "${EXPECT[grigory]}") left, taps a gate for $(rub $FARE):"
GRIGORY_FARE=$(fare_env grigory 'Sokolniki gate 1')
GRIGORY_OP=$(py 'd["body"]["id"]' "$GRIGORY_FARE")
submit_refused "$GRIGORY_FARE" insufficient_funds
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/ops/$GRIGORY_OP")
[ "$code" = 404 ] || fail "a refused op is in the journal (GET /v1/ops/$GRIGORY_OP → $code)"
echo "       → refused: insufficient_funds; a refused op is not journaled (GET /v1/ops/… → 404), he may top up and retry"

echo "18:00  The metro withdraws the morning's takings to its bank ($(rub "${EXPECT[metro]}")):"
TAKINGS=${EXPECT[metro]}
submit_ok "$(sign "{\"chain\":\"$CHAIN\",\"id\":\"$(new_id)\",\"type\":\"redeem\",\"from\":\"${WID[metro]}\",\"amount\":$TAKINGS}" "${KEY[metro]}")"
EXPECT[metro]=0
REDEEMED=$((REDEEMED + TAKINGS))
echo "       → redeemed (digital rubles burned, journal entry $(py 'd["index"]' "$OUT"))"

# --- the books ---------------------------------------------------------------

echo
echo "Balances:"
SUM=0
for name in "${NAMES[@]}"; do
  w=$(get "/v1/wallets/${WID[$name]}")
  balance=$(py 'd["balance"]' "$w")
  status=$(py 'd["status"]' "$w")
  printf '  %-26s %-8s %-7s %16s\n' "${LABEL[$name]}" "$(py 'd["kind"]' "$w")" "$status" "$(rub "$balance")"
  [ "$balance" = "${EXPECT[$name]}" ] || fail "${LABEL[$name]} holds $balance kopecks, expected ${EXPECT[$name]}"
  [ "$(py 'd["kind"]' "$w")" = "${KIND[$name]}" ] || fail "${LABEL[$name]} has kind $(py 'd["kind"]' "$w")"
  want=active
  [ "$name" != dmitry ] || want=frozen
  [ "$status" = "$want" ] || fail "${LABEL[$name]} is $status, expected $want"
  SUM=$((SUM + balance))
done

SUPPLY1=$(get /v1/supply)
echo
echo "GET /v1/supply: $SUPPLY1"
d_issued=$(( $(py 'd["issued"]' "$SUPPLY1") - $(py 'd["issued"]' "$SUPPLY0") ))
d_redeemed=$(( $(py 'd["redeemed"]' "$SUPPLY1") - $(py 'd["redeemed"]' "$SUPPLY0") ))
d_outstanding=$(( $(py 'd["outstanding"]' "$SUPPLY1") - $(py 'd["outstanding"]' "$SUPPLY0") ))

echo
echo "Checks:"
echo "  every balance is what the morning's ops imply: yes"
[ $SUM = $((ISSUED - REDEEMED)) ] ||
  fail "Σ balances of this morning's wallets is $SUM, but issued − redeemed this morning is $((ISSUED - REDEEMED))"
echo "  Σ balances of this morning's wallets = issued − redeemed this morning = $(rub $SUM): yes"
[ $d_issued = $ISSUED ] && [ $d_redeemed = $REDEEMED ] && [ $d_outstanding = $((ISSUED - REDEEMED)) ] ||
  fail "the supply moved by issued +$d_issued, redeemed +$d_redeemed, outstanding +$d_outstanding; this morning issued $ISSUED and redeemed $REDEEMED (did another client write to this ledger meanwhile?)"
echo "  supply moved by exactly that (issued +$(rub $ISSUED), redeemed +$(rub $REDEEMED)): nothing else changed"
echo
echo "The morning went as expected."
