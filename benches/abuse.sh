#!/usr/bin/env bash
# tollgate's front door under abuse: legitimate load with and without bad clients held open, and
# how the workers share a burst. A benchmark, not a timed test.
#
#   bash benches/abuse.sh
#
# Starts an upstream (nginx: `return 200`, a large static file at /intro/big, and /intro/upload,
# which reads a whole request body before answering), the test OpenID provider (tests/idp/server.mjs,
# opaque tokens), the fake introspection endpoint (benches/load/fake_introspection.mjs) and one
# release build of tollgate with an introspection API in front of the upstream (`workers = 2`, a
# small max_connections, short header_read_timeout and stream_idle_timeout so that the abuse is shed
# during a run). It prints, as Markdown:
#   - calm: wrk on the cached-token route alone -> req/s, p99, errors (non-2xx + socket errors),
#     tollgate's CPU per request;
#   - abuse: the same wrk while benches/abuse/abuser.py holds, for the whole run, 2 x max_connections
#     silent sockets, SLOW slow uploads and NONREADING clients that never read a large response, each
#     reconnecting when the gateway closes it; the abuser's counts and the gateway's
#     tollgate_connections_closed_total by reason over the run show that the abuse happened;
#     calm and abuse alternate over ROUNDS rounds; medians and the ratios abuse/calm;
#   - balance: wrk -t1 -c$BALANCE_CONNECTIONS on the same route, each worker thread's CPU
#     (utime+stime from /proc/PID/task/TID/stat) and req/s; with BASELINE_BIN, the same for that
#     binary.
#
# The abusers connect from 127.0.0.1 like wrk, so max_connections_per_ip stays 0 (off): on loopback
# a per-address cap cannot tell them from the legitimate client and would refuse both.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10] seconds per wrk run  WARMUP [2] seconds, once
#   THREADS [2] CONNECTIONS [32]: wrk -t/-c of the calm and abuse runs
#   MAX_CONNECTIONS [256]  HEADER_READ_TIMEOUT [2s]  STREAM_IDLE_TIMEOUT [3s]: tollgate's [listen]
#   (the two timeouts in whole seconds)
#   SILENT [2 x MAX_CONNECTIONS]  SLOW [16]  NONREADING [16]: abusive clients held open
#   SLOW_EVERY [5] seconds between two bytes of a slow upload  SETTLE [3] seconds of abuse before wrk
#   BIG_MIB [64] size of the large response  BALANCE_CONNECTIONS [50]  BALANCE_DURATION [DURATION]
#   BALANCE_TRIALS [3] wrk runs of the balance case, each with new connections
#   TOLLGATE_BIN: a tollgate binary to use instead of `cargo build --release`
#   BASELINE_BIN: a second tollgate binary whose worker balance is measured too
#   ABUSER_NICE [0]: the abuser's nice value; 19 models abusers on other machines, as in production:
#   on a small machine their own CPU otherwise competes with wrk and tollgate for the same cores
#   KEEP [0]: 1 keeps the work directory (configs, logs, raw wrk outputs)
#
# Needs what benches/load.sh needs (wrk, nginx, Node.js 20 with tests/idp, Python 3, curl). Every
# process listens on 127.0.0.1 only and every process started here is stopped on exit. wrk, nginx,
# the abuser and tollgate share the machine's cores: compare the figures of one run with each other.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-256}
HEADER_READ_TIMEOUT=${HEADER_READ_TIMEOUT:-2s}
STREAM_IDLE_TIMEOUT=${STREAM_IDLE_TIMEOUT:-3s}
SILENT=${SILENT:-$((2 * MAX_CONNECTIONS))}
SLOW=${SLOW:-16}
NONREADING=${NONREADING:-16}
SLOW_EVERY=${SLOW_EVERY:-5}
SETTLE=${SETTLE:-3}
BIG_MIB=${BIG_MIB:-64}
BALANCE_CONNECTIONS=${BALANCE_CONNECTIONS:-50}
BALANCE_DURATION=${BALANCE_DURATION:-$DURATION}
BALANCE_TRIALS=${BALANCE_TRIALS:-3}
BASELINE_BIN=${BASELINE_BIN:-}
ABUSER_NICE=${ABUSER_NICE:-0}
KEEP=${KEEP:-0}
[[ $HEADER_READ_TIMEOUT =~ ^[1-9][0-9]*s$ && $STREAM_IDLE_TIMEOUT =~ ^[1-9][0-9]*s$ ]] ||
  { echo "HEADER_READ_TIMEOUT and STREAM_IDLE_TIMEOUT are whole seconds, e.g. 2s" >&2; exit 2; }
# When a non-reading client checks whether it was shed: time to wait in the accept queue (about one
# header_read_timeout while the silent sockets fill it) and for the gateway to be served the head,
# then stream_idle_timeout of a blocked write, each doubled for the watchdog's sampling and the load.
CHECK_AFTER=$((2 * (${HEADER_READ_TIMEOUT%s} + ${STREAM_IDLE_TIMEOUT%s}) + 1))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches/load
work=$(mktemp -d /tmp/tollgate-abuse.XXXXXX)
# shellcheck source=benches/load/common.sh
source "$here/common.sh"
[[ -z $BASELINE_BIN || -x $BASELINE_BIN ]] || die "BASELINE_BIN $BASELINE_BIN is not an executable"

# --- upstream -------------------------------------------------------------------------------------
read -r P_UP P_TG P_TG_ADM P_BAL P_BAL_ADM < <(free_ports 5)
[[ -n ${P_BAL_ADM:-} ]] || die "not enough free loopback ports"
mkdir -p "$work/upstream/www/intro"
truncate -s "${BIG_MIB}M" "$work/upstream/www/intro/big"
chmod 711 "$work" # nginx's workers (not root) must reach the file; the directory stays unlistable
chmod -R a+rX "$work/upstream/www"
{
  nginx_common upstream
  cat <<EOF
    server {
        listen 127.0.0.1:$P_UP;
        default_type application/json;
        root $work/upstream/www;
        location / { return 200 '{"orders":[{"id":1,"status":"shipped"}]}\n'; }
        location = /intro/big { default_type application/octet-stream; }
        # Buffers the whole body before proxying it, as an application reading its body would.
        location = /intro/upload {
            client_max_body_size 0;
            proxy_pass http://127.0.0.1:$P_UP/orders/1;
        }
    }
}
EOF
} >"$work/upstream.conf"
start_nginx upstream

# --- provider and tollgate ------------------------------------------------------------------------
say "starting the test OpenID provider and the fake introspection endpoint"
start_node idp-opaque "$root/tests/idp/server.mjs" '{"accessTokenFormat":"opaque"}'
ISS_OPAQUE=$(json "$REPLY" issuer)
start_node fake "$here/fake_introspection.mjs" "$ISS_OPAQUE"
PORT_FAKE=$(json "$REPLY" port)
TOKEN=$(get_token "$ISS_OPAQUE")

# The front door's limits for the calm and abuse runs (a baseline binary may predate these keys, so
# the balance case goes without them).
FRONT_DOOR="max_connections = $MAX_CONNECTIONS
max_connections_per_ip = 0
header_read_timeout = \"$HEADER_READ_TIMEOUT\"
stream_idle_timeout = \"$STREAM_IDLE_TIMEOUT\""

# tollgate_conf PORT ADMIN [LISTEN LINES]
tollgate_conf() {
  cat <<EOF
[listen]
address = "127.0.0.1:$1"
admin_address = "127.0.0.1:$2"
workers = 2
${3:-}

[log]
level = "warn"

[provider]
issuer = "$ISS_OPAQUE"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"
introspection_url = "http://127.0.0.1:$PORT_FAKE/introspect"

[cache]
max_entries = 10000
max_ttl = "1h"
EOF
  api_introspection
}
tollgate_conf "$P_TG" "$P_TG_ADM" "$FRONT_DOOR" >"$work/tollgate.toml"
say "starting tollgate ($tollgate)"
"$tollgate" run --config "$work/tollgate.toml" >"$work/tollgate.log" 2>&1 &
pids+=($!)
PID_TG=$!
wait_ready "http://127.0.0.1:$P_TG_ADM/readyz" "$PID_TG" tollgate

URL=http://127.0.0.1:$P_TG/intro/orders/1
HDR="Authorization: Bearer $TOKEN"
status=$(curl -s -o "$work/probe.body" -w '%{http_code}' -H "$HDR" "$URL" || true)
[[ $status == 200 ]] || die "$URL answered $status: $(head -c 300 "$work/probe.body")"
big=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "$HDR" "http://127.0.0.1:$P_TG/intro/big" || true)
[[ $big == "200 $((BIG_MIB * 1048576))" ]] || die "/intro/big through tollgate: $big"

# run_wrk PID PORT THREADS CONNECTIONS SECONDS OUT: wrk on the cached-token route of the tollgate
# PID listening on PORT; prints "requests rps p50_us p99_us non2xx errors cpu_us" (cpu: PID's).
run_wrk() {
  local pid=$1 port=$2 t=$3 c=$4 secs=$5 out=$6 before after
  before=$(cpu_ticks "$pid")
  timeout $((secs + 30)) wrk -t"$t" -c"$c" -d"${secs}s" --latency -H "$HDR" "http://127.0.0.1:$port/intro/orders/1" \
    >"$out" 2>&1 || die "wrk failed: $(tail -3 "$out")"
  after=$(cpu_ticks "$pid")
  echo "$(python3 "$here/report.py" wrk "$out") $(((after - before) * 1000000 / clk_tck))"
}

# The gateway's closed-connection counters, one "reason count" a line.
closed_counts() {
  curl -sS -f "http://127.0.0.1:$P_TG_ADM/metrics" |
    sed -n 's/^tollgate_connections_closed_total{reason="\([^"]*\)"} \([0-9.e+]*\)$/\1 \2/p'
}

# start_abuser NAME: starts the abuser (its stdin a FIFO held open here) and waits for its first
# line; sets ABUSER_PID and ABUSER_FD.
start_abuser() {
  local name=$1
  mkfifo "$work/$name.in"
  nice -n "$ABUSER_NICE" python3 "$root/benches/abuse/abuser.py" "$(printf '{"port":%d,"silent":%d,"slow":%d,"nonreading":%d,"token":"%s","slow_path":"/intro/upload","big_path":"/intro/big","slow_every":%s,"check_after":%s}' \
    "$P_TG" "$SILENT" "$SLOW" "$NONREADING" "$TOKEN" "$SLOW_EVERY" "$CHECK_AFTER")" \
    <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  ABUSER_PID=$!
  pids+=("$ABUSER_PID")
  exec {ABUSER_FD}>"$work/$name.in"
  ABUSER_T0=$(date +%s%N)
  first_line "$work/$name.out" "$ABUSER_PID" >/dev/null
}

# stop_abuser NAME ROUND CASE: closes its stdin, waits for its counts, appends them with the
# gateway's closed connections (by reason, since closed-NAME.before) to abuse.jsonl.
stop_abuser() {
  local name=$1 cpu_pct
  closed_counts >"$work/closed-$name.after"
  # The abuser's own CPU (it shares the cores with wrk and tollgate), % of one core.
  cpu_pct=$(($(cpu_ticks "$ABUSER_PID") * 100000000000 / clk_tck / ($(date +%s%N) - ABUSER_T0)))
  exec {ABUSER_FD}>&-
  wait "$ABUSER_PID" || die "the abuser failed: $(tail -3 "$work/$name.err")"
  python3 - "$2" "$3" "$work/$name.out" "$work/closed-$name.before" "$work/closed-$name.after" "$cpu_pct" >>"$work/abuse.jsonl" <<'EOF'
import json, sys
counts = lambda path: {k: float(v) for k, v in (line.split() for line in open(path))}
before, after = counts(sys.argv[4]), counts(sys.argv[5])
closed = {k: int(after[k] - before.get(k, 0)) for k in sorted(after) if after[k] > before.get(k, 0)}
abuser = json.loads(open(sys.argv[3]).read().splitlines()[-1])
print(json.dumps({"round": int(sys.argv[1]), "case": sys.argv[2], "abuser": abuser, "gateway_closed": closed, "abuser_cpu_pct": int(sys.argv[6])}))
EOF
}

# abuse_run ROUND CASE: wrk under abuse; run_wrk's line goes to CASE-ROUND.row. (Not run in a
# subshell: the abuser's pid must reach pids, which the exit trap stops.)
#   abuse: the abuser first; wrk starts SETTLE s later, so its connections join the accept queue
#          behind the silent sockets (clients arriving during an attack);
#   held:  wrk first; the abuser starts 1 s later, so wrk's connections are already being served
#          (clients connected before the attack): what the abuse costs them beside admission.
abuse_run() {
  local r=$1 c=$2 name=abuser-$1-$2 wpid
  closed_counts >"$work/closed-$name.before"
  if [[ $c == abuse ]]; then
    start_abuser "$name"
    sleep "$SETTLE"
    run_wrk "$PID_TG" "$P_TG" "$THREADS" "$CONNECTIONS" "$DURATION" "$work/$c-$r.txt" >"$work/$c-$r.row"
  else
    run_wrk "$PID_TG" "$P_TG" "$THREADS" "$CONNECTIONS" "$DURATION" "$work/$c-$r.txt" >"$work/$c-$r.row" &
    wpid=$!
    sleep 1
    start_abuser "$name"
    wait "$wpid" || die "wrk failed under abuse ($c, round $r)"
  fi
  stop_abuser "$name" "$r" "$c"
}

say "warm-up: ${WARMUP}s"
run_wrk "$PID_TG" "$P_TG" "$THREADS" "$CONNECTIONS" "$WARMUP" "$work/warmup.txt" >/dev/null

results=$work/results.tsv
echo "case round requests rps p50_us p99_us non2xx errors cpu_us" >"$results"
for ((r = 1; r <= ROUNDS; r++)); do
  order="calm abuse held"
  ((r % 2)) || order="held abuse calm" # alternate, so no case always follows the same one
  for c in $order; do
    say "round $r/$ROUNDS $c (${DURATION}s)"
    if [[ $c == calm ]]; then
      row=$(run_wrk "$PID_TG" "$P_TG" "$THREADS" "$CONNECTIONS" "$DURATION" "$work/calm-$r.txt")
    else
      abuse_run "$r" "$c"
      row=$(<"$work/$c-$r.row")
    fi
    echo "$c $r $row" >>"$results"
  done
done

# --- worker balance -------------------------------------------------------------------------------
# utime+stime in clock ticks of each thread of PID, "tid name ticks" a line.
thread_ticks() {
  local t stat f
  for t in /proc/"$1"/task/*; do
    stat=$(<"$t/stat") || continue
    read -r -a f <<<"${stat##*) }"
    echo "${t##*/} $(<"$t/comm") $((f[11] + f[12]))"
  done
}

# balance BIN LABEL: one tollgate from BIN on its own ports (workers = 2, the other limits at their
# defaults), then BALANCE_TRIALS runs of wrk -t1 -c$BALANCE_CONNECTIONS, each with new connections
# (which worker accepts which is decided per burst); appends "label trial rps p99_us bad
# thread:tid=cpu_percent..." a trial to balance.txt.
balance() {
  local bin=$1 label=$2 pid row t
  tollgate_conf "$P_BAL" "$P_BAL_ADM" >"$work/balance-$label.toml"
  "$bin" run --config "$work/balance-$label.toml" >"$work/balance-$label.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_ready "http://127.0.0.1:$P_BAL_ADM/readyz" "$pid" "balance-$label"
  run_wrk "$pid" "$P_BAL" 1 "$BALANCE_CONNECTIONS" "$WARMUP" "$work/balance-$label-warmup.txt" >/dev/null
  for ((t = 1; t <= BALANCE_TRIALS; t++)); do
    thread_ticks "$pid" >"$work/balance-$label-$t.before"
    row=$(run_wrk "$pid" "$P_BAL" 1 "$BALANCE_CONNECTIONS" "$BALANCE_DURATION" "$work/balance-$label-$t.txt")
    thread_ticks "$pid" >"$work/balance-$label-$t.after"
    balance_line "$label $t" "$row" "$work/balance-$label-$t" >>"$work/balance.txt"
  done
  kill -TERM "$pid"
  wait "$pid" || true
}

# balance_line LABEL ROW PREFIX: LABEL, then ROW's req/s, p99 and errors, then each thread's CPU
# between PREFIX.before and PREFIX.after (% of one core; worker threads always, others from 1%).
balance_line() {
  python3 - "$1" "$2" "$3.before" "$3.after" "$BALANCE_DURATION" "$clk_tck" <<'EOF'
import sys
label, row, before, after, secs, tck = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
read = lambda p: {tid: (name, int(t)) for tid, name, t in (l.split() for l in open(p))}
b, a = read(before), read(after)
threads = []
for tid, (name, t) in a.items():
    pct = 100.0 * (t - b.get(tid, (name, 0))[1]) / tck / secs
    if pct >= 1.0 or name.startswith("tollgate-worker"):
        threads.append(f"{name}:{tid}={pct:.0f}")
requests, rps, p50, p99, non2xx, errors, cpu_us = row
print(label, rps, p99, int(non2xx) + int(errors), " ".join(sorted(threads)))
EOF
}
: >"$work/balance.txt"
say "balance: $BALANCE_TRIALS x wrk -t1 -c$BALANCE_CONNECTIONS (${BALANCE_DURATION}s)"
balance "$tollgate" new
if [[ -n $BASELINE_BIN ]]; then
  say "balance with the baseline ($BASELINE_BIN)"
  balance "$BASELINE_BIN" baseline
fi

# --- report ---------------------------------------------------------------------------------------
{
  echo "### Abuse run of $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(machine)"
  echo "- versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), python $(python3 -c 'import platform; print(platform.python_version())'), tollgate $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')${TOLLGATE_BIN:+ (TOLLGATE_BIN)}"
  echo "- command: \`ROUNDS=$ROUNDS DURATION=$DURATION THREADS=$THREADS CONNECTIONS=$CONNECTIONS MAX_CONNECTIONS=$MAX_CONNECTIONS SILENT=$SILENT SLOW=$SLOW NONREADING=$NONREADING ABUSER_NICE=$ABUSER_NICE bash benches/abuse.sh\`${BASELINE_BIN:+ (with BASELINE_BIN)}"
  echo "- tollgate: workers = 2, max_connections = $MAX_CONNECTIONS, max_connections_per_ip = 0 (every client is 127.0.0.1), header_read_timeout = $HEADER_READ_TIMEOUT, stream_idle_timeout = $STREAM_IDLE_TIMEOUT; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on a cached introspected token; the abuse starts ${SETTLE}s before wrk and runs until it ends; wrk, nginx, the abuser and tollgate share the $(nproc) CPUs"
  echo
  python3 "$root/benches/abuse/report.py" "$results" "$work/abuse.jsonl" "$work/balance.txt" "$BALANCE_CONNECTIONS" "$BALANCE_DURATION"
} | tee "$work/report.md"
say "done"
