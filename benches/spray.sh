#!/usr/bin/env bash
# The provider's budget under a token spray: what one client sending random tokens at full speed
# costs the provider, and what it costs everyone else. A benchmark, not a timed test.
#
#   bash benches/spray.sh
#
# Starts an upstream (nginx, `return 200`), the test OpenID provider (tests/idp/server.mjs, opaque
# tokens: every token is introspected there, and it counts the calls) and one release build of
# tollgate with an introspection API, `introspection_rate = $RATE` and, in mode `share`,
# `misses_per_client = $SHARE`. For each mode in MODES it runs, at once and for DURATION seconds,
# three clients from three loopback source addresses (benches/spray/client.mjs):
#   - 127.0.0.2 sprays distinct random tokens at full speed (SPRAY_CONNECTIONS connections);
#   - 127.0.0.3 presents NEW_TOKENS new valid tokens, one every 250 ms, retrying a 429 or 503 after
#     its Retry-After;
#   - 127.0.0.4 replays CACHED_TOKENS valid tokens cached before the run (CACHED_CONNECTIONS
#     connections).
# It prints, as Markdown, per mode: the provider's introspection calls during the run (counted at the
# provider) against the bound rate x seconds + burst; the new tokens answered 200, and how many of
# them on the first try or on the first retry after their Retry-After; the cached traffic's errors;
# the sprayer's statuses; tollgate's RSS before and after.
#
# Modes: `share` (introspection_rate and misses_per_client: the configuration the README
# recommends) and `global` (introspection_rate alone: the sprayer and the new tokens compete for
# one budget).
#
# Environment (defaults in brackets):
#   DURATION [30] seconds  RATE [50/s]  SHARE [20/s]  MODES [share global]
#   SPRAY_CONNECTIONS [64]  CACHED_CONNECTIONS [4]  NEW_TOKENS [100]  CACHED_TOKENS [10]
#   TOLLGATE_BIN: a tollgate binary to use instead of `cargo build --release`
#   KEEP [0]: 1 keeps the work directory (configs, logs, client outputs)
#
# Needs Node.js 20 with tests/idp, nginx, Python 3 and curl (installed as benches/load.sh does).
# Every process listens on 127.0.0.1 only and every process started here is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-30}
RATE=${RATE:-50/s}
SHARE=${SHARE:-20/s}
MODES=${MODES:-share global}
SPRAY_CONNECTIONS=${SPRAY_CONNECTIONS:-64}
CACHED_CONNECTIONS=${CACHED_CONNECTIONS:-4}
NEW_TOKENS=${NEW_TOKENS:-100}
CACHED_TOKENS=${CACHED_TOKENS:-10}
KEEP=${KEEP:-0}
[[ $RATE =~ ^[1-9][0-9]*/s$ ]] || { echo "RATE is per second, e.g. 50/s" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches/load
work=$(mktemp -d /tmp/tollgate-spray.XXXXXX)
# shellcheck source=benches/load/common.sh
source "$here/common.sh"

read -r P_UP P_TG P_TG_ADM < <(free_ports 3)
[[ -n ${P_TG_ADM:-} ]] || die "not enough free loopback ports"
start_upstream "$P_UP"

say "starting the test OpenID provider"
start_node idp "$root/tests/idp/server.mjs" '{"accessTokenFormat":"opaque"}'
ISSUER=$(json "$REPLY" issuer)
IDP_BASE=${ISSUER%/oauth2/default}
introspections() {
  curl -sS -f "$IDP_BASE/__stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["introspection"])'
}

say "minting $((NEW_TOKENS + CACHED_TOKENS)) tokens"
mint() {
  for _ in $(seq "$1"); do get_token "$ISSUER"; done |
    python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))'
}
NEW=$(mint "$NEW_TOKENS")
CACHED=$(mint "$CACHED_TOKENS")

BURST=${RATE%/s}
# tollgate_conf [PROVIDER LINES]
tollgate_conf() {
  cat <<EOF
[listen]
address = "127.0.0.1:$P_TG"
admin_address = "127.0.0.1:$P_TG_ADM"

[log]
level = "error"

[provider]
issuer = "$ISSUER"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"
introspection_rate = "$RATE"
${1:-}

[cache]
max_ttl = "1h"
EOF
  api_introspection
}

URL_PATH=/intro/orders/1
client() { node "$root/benches/spray/client.mjs" "$1"; }

# run MODE: one run; appends a Markdown row to $work/rows.md
run() {
  local mode=$1 lines=""
  [[ $mode == share ]] && lines="misses_per_client = \"$SHARE\""
  tollgate_conf "$lines" >"$work/tollgate-$mode.toml"
  say "mode $mode: starting tollgate"
  "$tollgate" run --config "$work/tollgate-$mode.toml" >"$work/tollgate-$mode.log" 2>&1 &
  pids+=($!)
  local pid=$!
  wait_ready "http://127.0.0.1:$P_TG_ADM/readyz" "$pid" "tollgate-$mode"
  local t
  for t in $(python3 -c 'import json, sys; print(" ".join(json.loads(sys.argv[1])))' "$CACHED"); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --interface 127.0.0.4 -H "Authorization: Bearer $t" "http://127.0.0.1:$P_TG$URL_PATH") == 200 ]] ||
      die "a cached token was refused while warming up"
  done
  local calls_before rss_before began
  calls_before=$(introspections)
  rss_before=$(rss_kib "$pid")
  began=$(date +%s.%N)
  say "mode $mode: ${DURATION}s of spray, new tokens and cached tokens"
  local base="\"port\":$P_TG,\"path\":\"$URL_PATH\""
  client "{\"role\":\"spray\",$base,\"local\":\"127.0.0.2\",\"seconds\":$DURATION,\"concurrency\":$SPRAY_CONNECTIONS}" >"$work/$mode-spray.json" &
  local c1=$!
  client "{\"role\":\"new\",$base,\"local\":\"127.0.0.3\",\"tokens\":$NEW,\"every_ms\":250,\"attempts\":10}" >"$work/$mode-new.json" &
  local c2=$!
  client "{\"role\":\"cached\",$base,\"local\":\"127.0.0.4\",\"tokens\":$CACHED,\"seconds\":$DURATION,\"concurrency\":$CACHED_CONNECTIONS}" >"$work/$mode-cached.json" &
  local c3=$!
  wait "$c1" "$c2" "$c3"
  local seconds calls rss_after
  seconds=$(python3 -c "import time; print(round(time.time() - $began, 1))")
  calls=$(($(introspections) - calls_before))
  rss_after=$(rss_kib "$pid")
  curl -sS "http://127.0.0.1:$P_TG_ADM/metrics" >"$work/$mode-metrics.txt"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  python3 "$root/benches/spray/report.py" row "$mode" "$work" "$seconds" "$calls" "$BURST" \
    "$rss_before" "$rss_after" >>"$work/rows.md"
}

for mode in $MODES; do
  [[ $mode == share || $mode == global ]] || die "unknown mode $mode (share, global)"
  run "$mode"
done

echo "## Spray: the provider's budget (benches/spray.sh)"
echo
echo "$(machine); introspection_rate $RATE (burst $BURST), misses_per_client $SHARE in mode share;" \
  "${DURATION}s; sprayer $SPRAY_CONNECTIONS connections, cached replay $CACHED_CONNECTIONS" \
  "connections, $NEW_TOKENS new tokens one every 250 ms."
echo
python3 "$root/benches/spray/report.py" header
cat "$work/rows.md"
