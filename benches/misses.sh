#!/usr/bin/env bash
# The miss path under a fixed rate of new tokens: what a token tollgate has never seen costs, in
# latency and CPU, when the provider answers in 20 ms. A benchmark, not a timed test.
#
#   bash benches/misses.sh
#
# Starts an upstream (nginx answering `return 200`), the fake introspection endpoint
# (benches/load/fake_introspection.mjs: every token active; it counts calls and distinct tokens)
# answering after DELAY_MS, and release builds of tollgate with one introspection API in front of
# the upstream (load.sh's case d). Each VARIANT is a fresh tollgate, so each starts with an empty
# cache. For each rate in RATES and each variant, benches/misses.rs (an open-loop generator: request
# i is due at i / rate seconds and its latency counts from then, so a slow answer cannot delay the
# next request and hide itself) sends DURATION seconds of requests, each with a new token (the miss
# phase), then the same tokens again at the same rate (the hit phase). It prints, as Markdown, per
# phase: the rate asked and achieved, p50/p90/p99/max latency, non-2xx and errors, the calls and
# the distinct tokens counted at the fake, and tollgate's CPU time per request (utime+stime from
# /proc over the phase); it checks that every miss was exactly one call (calls == distinct == 200s)
# and that the hit phase made none (exit status 1, after the report, when either does not hold),
# and gives the target line: p99 < 60 ms at 2,000 new tokens/s.
#
# Variants: `default` (every provider default: max_inflight 64, which at 20 ms a call allows
# 64 / 0.02 s = 3,200 calls a second at most) and `tuned` (max_inflight = TUNED_INFLIGHT). Both
# set cache.max_entries to hold every token of a run (its default, 10,000, holds 5 s of 2,000 new
# tokens a second, and the hit phase would be misses again).
#
# Environment (defaults in brackets):
#   RATE [2000] new tokens per second  RATES [$RATE]: several, e.g. "1000 2000 3000"
#   DURATION [20] seconds per phase  WARMUP [1] second at RATE/4 before each variant's phases
#   DELAY_MS [20]: the provider's answer time  MAX_CONNECTIONS [512]: the generator's cap
#   VARIANTS [default tuned]  TUNED_INFLIGHT [128]: max_inflight of variant `tuned`
#   PROFILE [0]: 1 adds, per variant and rate, a perf profile of tollgate over one more miss phase
#   TOLLGATE_BIN: a tollgate binary to use instead of `cargo build --release`
#   BASELINE_BIN: a second tollgate binary (e.g. an older commit's); each variant then runs first
#   with it (rows VARIANT-baseline), then with tollgate, in the same run
#   KEEP [0]: 1 keeps the work directory (configs, logs, raw generator outputs)
#
# Needs nginx (installed with apt-get when missing and running as root), Node.js, Python 3 and curl.
# Every process listens on 127.0.0.1 only and every process started here is stopped on exit. The
# generator, tollgate, nginx and the fake share the machine's cores: the generator reports how late
# its own requests left (late_p99_ms), so a slow generator is seen, not hidden.
set -euo pipefail

RATE=${RATE:-2000}
RATES=${RATES:-$RATE}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-1}
DELAY_MS=${DELAY_MS:-20}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-512}
VARIANTS=${VARIANTS:-default tuned}
TUNED_INFLIGHT=${TUNED_INFLIGHT:-128}
PROFILE=${PROFILE:-0}
BASELINE_BIN=${BASELINE_BIN:-}
KEEP=${KEEP:-0}
for n in $RATES $DURATION $WARMUP $DELAY_MS $MAX_CONNECTIONS $TUNED_INFLIGHT; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "RATES, DURATION, WARMUP, DELAY_MS, MAX_CONNECTIONS and TUNED_INFLIGHT are whole numbers" >&2; exit 2; }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches/load
work=$(mktemp -d /tmp/tollgate-misses.XXXXXX)
# tollgate is built with the generator (see common.sh).
with_bench=misses
# shellcheck source=benches/load/common.sh
source "$here/common.sh"

read -r P_UP P_TG P_TG_ADM < <(free_ports 3)
[[ -n ${P_TG_ADM:-} ]] || die "not enough free loopback ports"
start_upstream "$P_UP"

# Every endpoint is configured, so tollgate discovers nothing and no real provider is needed; the
# fake answers with this issuer, which tollgate checks (RFC 7662 §2.2 `iss`).
ISSUER=https://idp.bench.invalid/oauth2/default
start_node fake "$here/fake_introspection.mjs" "$ISSUER"
PORT_FAKE=$(json "$REPLY" port)
fake() { curl -sS -f ${2:+-X POST} "http://127.0.0.1:$PORT_FAKE/$1"; }
fake "__delay?ms=$DELAY_MS" post >/dev/null

say "building the generator and tollgate (cargo build --release --bench misses)"
generator=$(bench_binary misses)
if [[ -z ${TOLLGATE_BIN:-} ]]; then tollgate=$(bench_binary misses tollgate); fi

# tollgate_conf MAX_ENTRIES [PROVIDER LINES]
tollgate_conf() {
  local fake_url=http://127.0.0.1:$PORT_FAKE
  cat <<EOF
[listen]
address = "127.0.0.1:$P_TG"
admin_address = "127.0.0.1:$P_TG_ADM"

[log]
level = "warn"

[provider]
issuer = "$ISSUER"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"
introspection_url = "$fake_url/introspect"
authorize_url = "$fake_url/authorize"
token_url = "$fake_url/token"
jwks_url = "$fake_url/keys"
${2:-}

[cache]
max_entries = $1
EOF
  api_introspection
}

# generate RATE SECONDS PREFIX OUT: one generator run; its JSON line goes to OUT.
generate() {
  MISSES="127.0.0.1:$P_TG /intro/orders/1 $1 $2 $MAX_CONNECTIONS $3" \
    timeout $(($2 + 60)) "$generator" >"$4" || die "the generator failed ($3)"
}

stat_of() { json "$(fake __stats)" "$1"; }

# The machine's busy and total clock ticks over all CPUs (/proc/stat): how loaded the shared
# machine was during a phase, whoever loaded it.
machine_ticks() {
  local cpu user nice system idle iowait irq softirq steal _
  read -r cpu user nice system idle iowait irq softirq steal _ </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# phase NAME VARIANT RATE PID PREFIX: one measured phase; appends a row to $work/rows.tsv.
phase() {
  local name=$1 variant=$2 rate=$3 pid=$4 prefix=$5 out calls0 distinct0 conns0 before after busy0 total0 busy1 total1
  out=$work/$variant-$rate-$name.json
  say "$variant, $rate/s: $name phase (${DURATION}s)"
  calls0=$(stat_of calls) distinct0=$(stat_of distinct) conns0=$(stat_of connections)
  before=$(cpu_ticks "$pid")
  read -r busy0 total0 < <(machine_ticks)
  generate "$rate" "$DURATION" "$prefix" "$out"
  after=$(cpu_ticks "$pid")
  read -r busy1 total1 < <(machine_ticks)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$rate" "$name" "$(<"$out")" \
    $(($(stat_of calls) - calls0)) $(($(stat_of distinct) - distinct0)) \
    $(($(stat_of connections) - conns0)) $(((after - before) * 1000000 / clk_tck)) \
    $(((busy1 - busy0) * 100 / (total1 - total0 + 1))) >>"$work/rows.tsv"
}

# profile_misses VARIANT RATE PID: a perf profile of tollgate over one more miss phase (new tokens,
# not in the table: perf's own cost would be in its figures); its top symbols go to the report.
profile_misses() {
  local variant=$1 rate=$2 pid=$3 data=$work/perf-$1-$2.data
  command -v perf >/dev/null || { say "PROFILE=1: no perf on PATH, skipped"; return; }
  say "$variant, $rate/s: profiled miss phase (${DURATION}s)"
  perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$data" -- sleep "$DURATION" >/dev/null 2>&1 &
  local perf_pid=$!
  generate "$rate" "$DURATION" "prof-$variant-$rate-$nonce-" "$work/$variant-$rate-profile.json"
  wait "$perf_pid" || true
  {
    echo
    echo "#### perf: tollgate ($variant) over ${DURATION}s of misses at $rate/s, self time by symbol (top 30)"
    echo
    echo '```'
    perf report -i "$data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 2>/dev/null |
      grep -E '^ +[0-9.]+%' | sed -E 's/[ -]+$//' | head -30
    echo '```'
  } >>"$work/profiles.md"
}

# run_variant VARIANT RATE [BINARY]: a fresh tollgate, a warm-up with other tokens, the miss and hit
# phases. With BINARY (BASELINE_BIN) the rows are labelled VARIANT-baseline.
run_variant() {
  local variant=$1 rate=$2 bin=${3:-$tollgate} lines="" pid
  if [[ $variant == tuned ]]; then lines="max_inflight = $TUNED_INFLIGHT"; fi
  if [[ -n ${3:-} ]]; then variant=$variant-baseline; fi
  # Room for the warm-up's and the phase's tokens, and some.
  tollgate_conf $((rate * (DURATION + WARMUP) * 2 + 10000)) "$lines" >"$work/tollgate-$variant-$rate.toml"
  "$bin" run --config "$work/tollgate-$variant-$rate.toml" >"$work/tollgate-$variant-$rate.log" 2>&1 &
  pids+=($!)
  pid=$!
  wait_ready "http://127.0.0.1:$P_TG_ADM/readyz" "$pid" "tollgate-$variant-$rate"
  local probe
  probe=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer probe-$variant-$rate-$nonce" "http://127.0.0.1:$P_TG/intro/orders/1")
  [[ $probe == 200 ]] || die "tollgate ($variant) answered $probe to a probe: $(tail -5 "$work/tollgate-$variant-$rate.log")"
  if ((WARMUP > 0)); then
    # Opens the connections on both sides and faults the code in; its own tokens, not measured.
    say "$variant, $rate/s: warm-up (${WARMUP}s at $((rate / 4 + 1))/s)"
    generate $((rate / 4 + 1)) "$WARMUP" "warm-$variant-$rate-$nonce-" "$work/$variant-$rate-warmup.json"
  fi
  local prefix=miss-$variant-$rate-$nonce-
  phase miss "$variant" "$rate" "$pid" "$prefix"
  phase hit "$variant" "$rate" "$pid" "$prefix"
  if [[ $PROFILE == 1 ]]; then profile_misses "$variant" "$rate" "$pid"; fi
  curl -sS "http://127.0.0.1:$P_TG_ADM/metrics" >"$work/metrics-$variant-$rate.txt" || true
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

nonce=$RANDOM$RANDOM
: >"$work/rows.tsv"
: >"$work/profiles.md"
for rate in $RATES; do
  for variant in $VARIANTS; do
    [[ $variant == default || $variant == tuned ]] || die "unknown variant $variant (default, tuned)"
    if [[ -n $BASELINE_BIN ]]; then run_variant "$variant" "$rate" "$BASELINE_BIN"; fi
    run_variant "$variant" "$rate"
  done
done

{
  echo "### Misses: run of $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(machine)"
  echo "- versions: $(nginx -v 2>&1 | sed 's/.*: //'), node $(node -v), tollgate $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')${TOLLGATE_BIN:+ (TOLLGATE_BIN)}${BASELINE_BIN:+, and a baseline binary (BASELINE_BIN)}"
  echo "- command: \`RATES=\"$RATES\" DURATION=$DURATION DELAY_MS=$DELAY_MS MAX_CONNECTIONS=$MAX_CONNECTIONS VARIANTS=\"$VARIANTS\" TUNED_INFLIGHT=$TUNED_INFLIGHT bash benches/misses.sh\`"
  echo "- provider answering in $DELAY_MS ms; variant default: every provider default (max_inflight 64); tuned: max_inflight = $TUNED_INFLIGHT; both: cache.max_entries sized to the run; the generator, tollgate, nginx and the fake share the $(nproc) CPUs"
  echo
  python3 "$root/benches/misses/report.py" "$work/rows.tsv"
  cat "$work/profiles.md"
} | tee "$work/report.md"
say "done"
