#!/usr/bin/env bash
# tollgate's load benchmark: real processes on loopback, one run, interleaved rounds.
#
#   bash benches/load.sh
#
# Starts an upstream (nginx answering `return 200`), nginx as a bare reverse proxy in front of it,
# the test OpenID provider (tests/idp/server.mjs: one opaque-token and one JWT instance), a tiny fake
# introspection endpoint (benches/load/fake_introspection.mjs) and release builds of tollgate, and
# drives them with wrk. It prints, as Markdown:
#   - req/s, p50/p99 latency and the proxy's CPU time per request (utime+stime from /proc, and
#     utime alone) for (a) the upstream direct, (b) nginx proxying, (c) tollgate on a public route,
#     (d) tollgate with a cached introspected token, (e) tollgate with a cached JWT, (f) = (d) with
#     the access log on; medians over ROUNDS interleaved rounds, the ratios c/b, d/b, e/b (req/s,
#     CPU, user-space CPU, p99), and f/d and e/d (the access log's and a JWT's cost);
#   - the RSS 100 000 distinct cached tokens add, the introspection calls a stampede of 200 concurrent
#     requests with one new token makes (introspection slowed to 100 ms), the JWKS fetches of a cold
#     start under 200 concurrent JWT requests, and the connections opened to the provider.
#   - TLS (cases t and u, in the same rounds): (t) nginx terminating TLS as a bare proxy (`ssl` on
#     its listener, keep-alive) and (u) tollgate terminating TLS with a cached introspected token,
#     the same certificate; then new TLS connections per second (full handshakes, and resumed ones
#     with tickets) against both, with the server's CPU per connection (benches/handshakes.rs: each
#     connection is a handshake and one request), and the ratios u/t.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10] seconds per case per round  WARMUP [2] seconds per case, once
#   THREADS [2] CONNECTIONS [64]: wrk -t/-c (CONNECTIONS is also the concurrency of the distinct-token
#   client)  TOKENS [100000]: distinct tokens for the memory figure
#   STAMPEDE [200] concurrent requests of the stampede and the cold start
#   CASES ["a b c d e f t u"]  PROFILE [0]: 1 adds a perf profile of tollgate in (d), (e) and (u) (those in CASES), after the rounds
#   TOLLGATE_BIN: a tollgate binary to use instead of `cargo build --release`
#   BASELINE_BIN: a second tollgate binary (e.g. an older commit's); adds case (d0) = (d) served by
#   it, interleaved in the same rounds, and the ratios d/d0
#   KEEP [0]: 1 keeps the work directory (configs, logs, raw wrk outputs)
#   KEY_TYPE [rsa]: the TLS key, rsa (2048 bits: cert-manager's default) or ec (P-256)
#   HS_SECONDS [5] HS_CONCURRENCY [32]: each handshake run, per round (only with t or u in CASES)
#
# Needs wrk and nginx (installed with apt-get when missing and running as root), Node.js 20 with
# tests/idp installed (`npm ci --prefix tests/idp`, done here when missing), Python 3 and curl. Every
# process listens on 127.0.0.1 only and every process started here is stopped on exit. All of them
# share the machine's cores with wrk: compare the figures of one run with each other (the ratios),
# not across machines.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
TOKENS=${TOKENS:-100000}
STAMPEDE=${STAMPEDE:-200}
CASES=${CASES:-a b c d e f t u}
KEY_TYPE=${KEY_TYPE:-rsa}
HS_SECONDS=${HS_SECONDS:-5}
HS_CONCURRENCY=${HS_CONCURRENCY:-32}
PROFILE=${PROFILE:-0}
KEEP=${KEEP:-0}
BASELINE_BIN=${BASELINE_BIN:-}
# With a baseline binary, (d0) is (d) served by it, in the same rounds.
[[ -n $BASELINE_BIN && " $CASES " == *" d "* && " $CASES " != *" d0 "* ]] && CASES="$CASES d0"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches/load
work=$(mktemp -d /tmp/tollgate-load.XXXXXX)
# shellcheck source=benches/load/common.sh
source "$here/common.sh"

# --- upstream and nginx ---------------------------------------------------------------------------
read -r P_UP P_NGX P_A P_A_ADM P_B P_B_ADM P_F P_F_ADM P_M P_M_ADM P_C P_C_ADM P_A0 P_A0_ADM P_NGX_TLS P_S P_S_ADM < <(free_ports 17)
[[ -n ${P_S_ADM:-} ]] || die "not enough free loopback ports"
tls_cases=0
[[ " $CASES " == *" t "* || " $CASES " == *" u "* ]] && tls_cases=1
# nginx's TLS server reads these files even when no TLS case runs.
make_certificate "$work/tls" "$KEY_TYPE"

start_upstream "$P_UP"

{
  nginx_common nginx
  nginx_backend
  cat <<EOF
    server {
        listen 127.0.0.1:$P_NGX;
$proxy_location
    }
    server {
        listen 127.0.0.1:$P_NGX_TLS ssl;
        ssl_certificate $work/tls/server.crt;
        ssl_certificate_key $work/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
$proxy_location
    }
}
EOF
} >"$work/nginx.conf"

start_nginx nginx

# --- providers ------------------------------------------------------------------------------------
say "starting the test OpenID providers"
start_node idp-opaque "$root/tests/idp/server.mjs" '{"accessTokenFormat":"opaque"}'
ISS_OPAQUE=$(json "$REPLY" issuer)
start_node idp-jwt "$root/tests/idp/server.mjs" '{"accessTokenFormat":"jwt"}'
ISS_JWT=$(json "$REPLY" issuer)
start_node idp-cold "$root/tests/idp/server.mjs" '{"accessTokenFormat":"jwt"}'
ISS_COLD=$(json "$REPLY" issuer)
PORT_COLD=$(json "$REPLY" port)
start_node fake "$here/fake_introspection.mjs" "$ISS_OPAQUE"
PORT_FAKE=$(json "$REPLY" port)

OPAQUE=$(get_token "$ISS_OPAQUE")
JWT=$(get_token "$ISS_JWT")
JWT_COLD=$(get_token "$ISS_COLD")
[[ $JWT == *.*.* && $OPAQUE != *.* ]] || die "unexpected token formats: opaque '$OPAQUE', jwt '${JWT:0:40}...'"

# --- tollgate -------------------------------------------------------------------------------------
# tollgate_conf PORT ADMIN ISSUER LEVEL MAX_ENTRIES [EXTRA PROVIDER LINES]; then API blocks appended.
tollgate_conf() {
  cat <<EOF
[listen]
address = "127.0.0.1:$1"
admin_address = "127.0.0.1:$2"

[log]
level = "$4"

[provider]
issuer = "$3"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"
${6:-}

[cache]
max_entries = $5
max_ttl = "1h"
EOF
}
{ tollgate_conf "$P_A" "$P_A_ADM" "$ISS_OPAQUE" warn 10000; api_public; api_introspection; } >"$work/tollgate-a.toml"
{ tollgate_conf "$P_B" "$P_B_ADM" "$ISS_JWT" warn 10000; api_jwt; } >"$work/tollgate-b.toml"
{ tollgate_conf "$P_F" "$P_F_ADM" "$ISS_OPAQUE" info 10000; api_introspection; } >"$work/tollgate-f.toml"
{
  tollgate_conf "$P_M" "$P_M_ADM" "$ISS_OPAQUE" warn $((TOKENS * 2 + 10000)) \
    "introspection_url = \"http://127.0.0.1:$PORT_FAKE/introspect\""
  api_introspection
} >"$work/tollgate-m.toml"
{ tollgate_conf "$P_C" "$P_C_ADM" "$ISS_COLD" warn 10000; api_jwt; } >"$work/tollgate-c.toml"
{ tollgate_conf "$P_A0" "$P_A0_ADM" "$ISS_OPAQUE" warn 10000; api_introspection; } >"$work/tollgate-a0.toml"
{
  tollgate_conf "$P_S" "$P_S_ADM" "$ISS_OPAQUE" warn 10000
  printf '\n[listen.tls]\ncert = "%s"\nkey = "%s"\n' "$work/tls/server.crt" "$work/tls/server.key"
  api_introspection
} >"$work/tollgate-s.toml"

start_tollgate() {
  local name=$1 bin=${2:-$tollgate}
  "$bin" run --config "$work/tollgate-$name.toml" >"$work/tollgate-$name.log" 2>&1 &
  pids+=($!)
  eval "PID_TOLLGATE_${name^^}=$!"
}
say "starting tollgate ($tollgate)"
for name in a b f m; do start_tollgate "$name"; done
((tls_cases)) && start_tollgate s
wait_ready "http://127.0.0.1:$P_A_ADM/readyz" "$PID_TOLLGATE_A" tollgate-a
wait_ready "http://127.0.0.1:$P_B_ADM/readyz" "$PID_TOLLGATE_B" tollgate-b
wait_ready "http://127.0.0.1:$P_F_ADM/readyz" "$PID_TOLLGATE_F" tollgate-f
wait_ready "http://127.0.0.1:$P_M_ADM/readyz" "$PID_TOLLGATE_M" tollgate-m
((tls_cases)) && wait_ready "http://127.0.0.1:$P_S_ADM/readyz" "$PID_TOLLGATE_S" tollgate-s
if [[ -n $BASELINE_BIN ]]; then
  say "starting the baseline tollgate ($BASELINE_BIN)"
  start_tollgate a0 "$BASELINE_BIN"
  wait_ready "http://127.0.0.1:$P_A0_ADM/readyz" "$PID_TOLLGATE_A0" tollgate-a0
fi

# --- the cases ------------------------------------------------------------------------------------
declare -A URL HDR PROCS
URL[a]=http://127.0.0.1:$P_UP/orders/1
URL[b]=http://127.0.0.1:$P_NGX/orders/1
URL[c]=http://127.0.0.1:$P_A/open/orders/1
URL[d]=http://127.0.0.1:$P_A/intro/orders/1
URL[e]=http://127.0.0.1:$P_B/jwt/orders/1
URL[f]=http://127.0.0.1:$P_F/intro/orders/1
URL[d0]=http://127.0.0.1:$P_A0/intro/orders/1
URL[t]=https://localhost:$P_NGX_TLS/orders/1
URL[u]=https://localhost:$P_S/intro/orders/1
HDR[d]="Authorization: Bearer $OPAQUE"
HDR[e]="Authorization: Bearer $JWT"
HDR[f]="Authorization: Bearer $OPAQUE"
HDR[d0]="Authorization: Bearer $OPAQUE"
HDR[u]="Authorization: Bearer $OPAQUE"
PROCS[a]=upstream
PROCS[b]=nginx
PROCS[c]=$PID_TOLLGATE_A
PROCS[d]=$PID_TOLLGATE_A
PROCS[e]=$PID_TOLLGATE_B
PROCS[f]=$PID_TOLLGATE_F
PROCS[d0]=${PID_TOLLGATE_A0:-}
PROCS[t]=nginx
PROCS[u]=${PID_TOLLGATE_S:-}

# The processes whose CPU a case charges: nginx's master and its workers, or tollgate's one process.
case_pids() {
  case ${PROCS[$1]} in
    upstream) echo "$PID_UPSTREAM" $(pgrep -P "$PID_UPSTREAM") ;;
    nginx) echo "$PID_NGINX" $(pgrep -P "$PID_NGINX") ;;
    *) echo "${PROCS[$1]}" ;;
  esac
}

curl_case() {
  local c=$1
  if [[ -n ${HDR[$c]:-} ]]; then
    curl -s --cacert "$work/tls/ca.crt" -o "$work/probe.body" -w '%{http_code}' -H "${HDR[$c]}" "${URL[$c]}"
  else
    curl -s --cacert "$work/tls/ca.crt" -o "$work/probe.body" -w '%{http_code}' "${URL[$c]}"
  fi
}

for c in $CASES; do
  [[ -n ${URL[$c]:-} ]] || die "unknown case $c (CASES may list a b c d e f t u, and d0)"
  [[ $c != d0 || -n $BASELINE_BIN ]] || die "case d0 needs BASELINE_BIN"
  status=$(curl_case "$c" || true)
  [[ $status == 200 ]] || die "case $c: ${URL[$c]} answered $status: $(head -c 300 "$work/probe.body")"
done

# run_wrk CASE SECONDS OUT: one wrk run; prints
# "requests rps p50_us p99_us non2xx errors cpu_us user_us" (user_us: the user-space part of cpu_us).
run_wrk() {
  local c=$1 secs=$2 out=$3 procs before after user_before user_after
  procs=$(case_pids "$c")
  local args=(-t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency)
  [[ -n ${HDR[$c]:-} ]] && args+=(-H "${HDR[$c]}")
  # shellcheck disable=SC2086
  before=$(cpu_ticks $procs) user_before=$(user_ticks $procs)
  timeout $((secs + 30)) wrk "${args[@]}" "${URL[$c]}" >"$out" 2>&1 || die "wrk failed for case $c: $(tail -3 "$out")"
  # shellcheck disable=SC2086
  after=$(cpu_ticks $procs) user_after=$(user_ticks $procs)
  echo "$(python3 "$here/report.py" wrk "$out") $(((after - before) * 1000000 / clk_tck)) $(((user_after - user_before) * 1000000 / clk_tck))"
}

read -r -a cases <<<"$CASES"
say "warm-up: ${WARMUP}s per case"
for c in "${cases[@]}"; do run_wrk "$c" "$WARMUP" "$work/warmup-$c.txt" >/dev/null; done

results=$work/results.tsv
echo "case round requests rps p50_us p99_us cpu_us non2xx errors user_us" >"$results"
for ((r = 1; r <= ROUNDS; r++)); do
  n=${#cases[@]}
  for ((i = 0; i < n; i++)); do
    c=${cases[$(((i + r - 1) % n))]} # each round starts one case later: no case always follows the same one
    say "round $r/$ROUNDS case $c (${DURATION}s)"
    row=$(run_wrk "$c" "$DURATION" "$work/round$r-$c.txt")
    read -r requests rps p50 p99 non2xx errors cpu_us user_us <<<"$row"
    echo "$c $r $requests $rps $p50 $p99 $cpu_us $non2xx $errors $user_us" >>"$results"
  done
done
RSS_A=$(rss_kib "$PID_TOLLGATE_A")
RSS_B=$(rss_kib "$PID_TOLLGATE_B")
RSS_NGINX=0
for p in $(case_pids b); do RSS_NGINX=$((RSS_NGINX + $(rss_kib "$p"))); done

# --- TLS: new connections per second --------------------------------------------------------------
# run_handshakes SERVER MODE: "connections seconds resumed failures non2xx cpu_us" for one run.
run_handshakes() {
  local server=$1 mode=$2 procs before after out addr path header=
  if [[ $server == t ]]; then
    addr=127.0.0.1:$P_NGX_TLS path=/orders/1
  else
    addr=127.0.0.1:$P_S path=/intro/orders/1 header="Authorization: Bearer $OPAQUE"
  fi
  procs=$(case_pids "$server")
  # shellcheck disable=SC2086
  before=$(cpu_ticks $procs)
  out=$(HANDSHAKES="$addr localhost $work/tls/ca.crt $mode $HS_CONCURRENCY $HS_SECONDS $path $header" \
    timeout $((HS_SECONDS + 30)) "$handshakes") || die "the handshake client failed against $server ($mode)"
  # shellcheck disable=SC2086
  after=$(cpu_ticks $procs)
  echo "$out $(((after - before) * 1000000 / clk_tck))"
}
hs_results=$work/handshakes.tsv
if ((tls_cases)); then
  say "building the handshake client (cargo build --release --bench handshakes)"
  handshakes=$(bench_binary handshakes)
  echo "server mode round connections seconds resumed failures non2xx cpu_us" >"$hs_results"
  for ((r = 1; r <= ROUNDS; r++)); do
    for run in "t full" "u full" "t resumed" "u resumed"; do
      read -r server mode <<<"$run"
      say "round $r/$ROUNDS handshakes: $server $mode (${HS_SECONDS}s)"
      echo "$server $mode $r $(run_handshakes "$server" "$mode")" >>"$hs_results"
    done
  done
fi

# --- provider traffic: keep-alive, memory, stampede -----------------------------------------------
fake() { curl -sS -f ${2:+-X POST} "http://127.0.0.1:$PORT_FAKE/$1"; }
fake_stat() { json "$(fake __stats)" "$1"; }
nonce=$RANDOM$RANDOM
URL_M=http://127.0.0.1:$P_M/intro/orders/1

# distinct_tokens PREFIX COUNT CONCURRENCY: COUNT distinct tokens through tollgate-m; prints the
# seconds it took. Every answer must be 200.
distinct_tokens() {
  local out
  out=$(node "$here/distinct.mjs" "{\"port\":$P_M,\"path\":\"/intro/orders/1\",\"prefix\":\"$1\",\"count\":$2,\"concurrency\":$3}") ||
    die "distinct tokens ($1) failed"
  [[ $(json "$out" statuses 200) == "$2" ]] 2>/dev/null || die "distinct tokens ($1): not all 200: $out"
  json "$out" seconds
}

say "keep-alive: 1000 distinct tokens, $CONNECTIONS connections, then 1000 more over one connection"
calls0=$(fake_stat calls) conns0=$(fake_stat connections)
distinct_tokens "ka-$nonce" 1000 "$CONNECTIONS" >/dev/null
calls1=$(fake_stat calls) conns1=$(fake_stat connections)
distinct_tokens "ka1-$nonce" 1000 1 >/dev/null
calls2=$(fake_stat calls) conns2=$(fake_stat connections)
KA_CALLS=$((calls1 - calls0)) KA_CONNS=$((conns1 - conns0))
KA1_CALLS=$((calls2 - calls1)) KA1_CONNS=$((conns2 - conns1))

say "memory: $TOKENS distinct tokens"
sleep 1
RSS_BEFORE=$(rss_kib "$PID_TOLLGATE_M")
MEM_SECS=$(distinct_tokens "mem-$nonce" "$TOKENS" "$CONNECTIONS")
calls3=$(fake_stat calls)
sleep 2
RSS_AFTER=$(rss_kib "$PID_TOLLGATE_M")
MEM_CALLS=$((calls3 - calls2))
# The first tenth again: cached, so no introspection.
REPLAY_REQS=$((TOKENS / 10))
distinct_tokens "mem-$nonce" "$REPLAY_REQS" "$CONNECTIONS" >/dev/null
calls4=$(fake_stat calls)
REPLAY_CALLS=$((calls4 - calls3))
RSS_FINAL=$(rss_kib "$PID_TOLLGATE_M")

say "stampede: $STAMPEDE concurrent requests with one new token, introspection slowed to 100 ms"
fake "__delay?ms=100" post >/dev/null
calls5=$(fake_stat calls)
STAMPEDE_OUT=$(node "$here/burst.mjs" "{\"port\":$P_M,\"path\":\"/intro/orders/1\",\"token\":\"stampede-$nonce\",\"n\":$STAMPEDE}")
calls6=$(fake_stat calls)
fake "__delay?ms=0" post >/dev/null
STAMPEDE_CALLS=$((calls6 - calls5))

# --- cold start -----------------------------------------------------------------------------------
cold_stats() { curl -sS -f "http://127.0.0.1:$PORT_COLD/__stats"; }
say "cold start: $STAMPEDE concurrent JWT requests as soon as tollgate accepts connections"
COLD0=$(cold_stats)
t0=$(date +%s%N)
start_tollgate c
COLD_BURST=$(node "$here/burst.mjs" "{\"port\":$P_C,\"path\":\"/jwt/orders/1\",\"token\":\"$JWT_COLD\",\"n\":$STAMPEDE,\"waitForPortMs\":20000}")
wait_ready "http://127.0.0.1:$P_C_ADM/readyz" "$PID_TOLLGATE_C" tollgate-c
COLD_READY_MS=$((($(date +%s%N) - t0) / 1000000))
COLD_BURST2=$(node "$here/burst.mjs" "{\"port\":$P_C,\"path\":\"/jwt/orders/1\",\"token\":\"$JWT_COLD\",\"n\":$STAMPEDE}")
sleep 0.5
COLD1=$(cold_stats)
COLD_JWKS=$(($(json "$COLD1" jwks) - $(json "$COLD0" jwks)))
COLD_DISC_OAUTH=$(($(json "$COLD1" discovery_oauth) - $(json "$COLD0" discovery_oauth)))
COLD_DISC_OPENID=$(($(json "$COLD1" discovery_openid) - $(json "$COLD0" discovery_openid)))

# --- optional profile -----------------------------------------------------------------------------
profile_case() {
  local c=$1 pid=$2
  say "perf profile of case $c (${DURATION}s)"
  perf record -q -e cpu-clock -F 999 -g -p "$pid" -o "$work/perf-$c.data" -- sleep "$DURATION" >/dev/null 2>&1 &
  local perf_pid=$!
  run_wrk "$c" "$DURATION" "$work/profile-$c.txt" >/dev/null
  wait "$perf_pid" || true
  echo
  echo "#### perf: case $c, self time by symbol (top 25)"
  echo
  echo '```'
  perf report -i "$work/perf-$c.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -25
  echo '```'
}

# --- report ---------------------------------------------------------------------------------------
mem_delta_kib=$((RSS_AFTER - RSS_BEFORE))
{
  echo "### Run of $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(machine)"
  echo "- versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), node $(node -v), tollgate $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')${TOLLGATE_BIN:+ (TOLLGATE_BIN)}"
  echo "- command: \`ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNECTIONS=$CONNECTIONS TOKENS=$TOKENS bash benches/load.sh\`${BASELINE_BIN:+ (with BASELINE_BIN)}"
  echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS interleaved rounds of ($CASES), ${WARMUP}s warm-up per case; wrk, the proxy under test and the upstream share the $(nproc) CPUs"
  echo
  python3 "$here/report.py" table "$results"
  echo
  echo "Resident memory after the rounds: tollgate (c, d) $((RSS_A / 1024)) MiB, tollgate (e) $((RSS_B / 1024)) MiB, nginx (b, master + workers) $((RSS_NGINX / 1024)) MiB."
  echo
  echo "| provider traffic | measured | target |"
  echo "|---|---|---|"
  echo "| RSS added by $TOKENS distinct cached introspected tokens | $((RSS_BEFORE / 1024)) → $((RSS_AFTER / 1024)) MiB: +$((mem_delta_kib / 1024)) MiB ($((mem_delta_kib * 1024 / TOKENS)) bytes per token); $MEM_CALLS introspections in ${MEM_SECS}s; replaying $REPLAY_REQS of them: $REPLAY_CALLS introspections (RSS then $((RSS_FINAL / 1024)) MiB) | < 100 MiB |"
  echo "| stampede: $STAMPEDE concurrent requests, one new token, introspection answering in 100 ms | $STAMPEDE_CALLS introspection call(s); $STAMPEDE_OUT | exactly 1 |"
  echo "| cold start: $STAMPEDE concurrent JWT requests as soon as the port accepts | $COLD_JWKS JWKS fetch(es); discovery: $COLD_DISC_OAUTH oauth-authorization-server (the test provider answers 404) then $COLD_DISC_OPENID openid-configuration; burst at start: $COLD_BURST; ready after ${COLD_READY_MS} ms; the same burst once ready: $COLD_BURST2 | exactly 1 JWKS fetch |"
  echo "| keep-alive: 1000 distinct tokens over $CONNECTIONS client connections | $KA_CALLS introspections over $KA_CONNS new TCP connections | connections reused |"
  echo "| keep-alive: 1000 distinct tokens over 1 client connection | $KA1_CALLS introspections over $KA1_CONNS new TCP connection(s) | connections reused |"
  if ((tls_cases)); then
    echo
    echo "New TLS connections ($KEY_TYPE key; each a handshake, one request and close; $HS_CONCURRENCY concurrent, ${HS_SECONDS}s per run, $ROUNDS rounds):"
    echo
    python3 "$here/report.py" handshakes "$hs_results"
  fi
  if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
    [[ " $CASES " == *" d "* ]] && profile_case d "$PID_TOLLGATE_A"
    [[ " $CASES " == *" e "* ]] && profile_case e "$PID_TOLLGATE_B"
    [[ " $CASES " == *" u "* ]] && profile_case u "$PID_TOLLGATE_S"
  fi
} | tee "$work/report.md"
say "done"
