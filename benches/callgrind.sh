#!/usr/bin/env bash
# Instructions per request on the gateway's request paths, counted by valgrind's callgrind: user
# space only (the kernel's TCP is not counted), and repeatable for the same binary and inputs
# whatever else the machine is doing, so a change to the hot path can be measured exactly.
#
#   bash benches/callgrind.sh
#
# Runs each case's server under `valgrind --tool=callgrind`, sends WARMUP requests (the token is
# cached, connections pooled), zeroes the counters, sends REQUESTS more one at a time over one
# keep-alive connection (benches/callgrind/client.py), dumps, and prints instructions per request
# with the busiest functions (self cost). Cases:
#   (b) nginx as a bare reverse proxy (one process: `master_process off`, one worker), the baseline
#   (c) tollgate, public route   (d) cached introspected token   (e) cached JWT
#   (f) = (d) with the access log on (`level = "info"`, the default)
# tollgate runs with `workers = 1`. The upstream (nginx `return 200`) is not counted.
#
# Environment: CASES ["b c d e f"]  REQUESTS [3000]  WARMUP [300]  TOP [25] functions per case
#   TOLLGATE_BIN: a tollgate binary instead of `cargo build --release`; KEEP [0]: 1 keeps the
#   work directory (callgrind.out.* files, for callgrind_annotate)
# Needs valgrind (installed with apt-get when missing and running as root), plus what load.sh needs.
set -euo pipefail

CASES=${CASES:-b c d e f}
REQUESTS=${REQUESTS:-3000}
WARMUP=${WARMUP:-300}
TOP=${TOP:-25}
KEEP=${KEEP:-0}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$root/benches/load
work=$(mktemp -d /tmp/tollgate-callgrind.XXXXXX)
# shellcheck source=benches/load/common.sh
source "$here/common.sh"
# The servers run in the work directory (callgrind writes there).
tollgate=$(cd "$(dirname "$tollgate")" && pwd)/$(basename "$tollgate")

if ! command -v valgrind >/dev/null; then
  [[ $(id -u) == 0 ]] || die "install valgrind (apt-get install valgrind) or run as root"
  say "installing valgrind"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >"$work/apt.log" 2>&1 ||
    { apt-get update -q >>"$work/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >>"$work/apt.log" 2>&1; } ||
    die "apt-get install valgrind failed: see $work/apt.log"
fi

read -r P_UP P_NGX P_TG P_TG_ADM < <(free_ports 4)
[[ -n ${P_TG_ADM:-} ]] || die "not enough free loopback ports"

start_upstream "$P_UP"

# The proxy under callgrind: one process, one worker, the same proxying as load.sh's case (b).
{
  nginx_common nginx | sed -e 's/^master_process on;/master_process off;/' -e 's/^worker_processes 2;/worker_processes 1;/'
  nginx_backend
  cat <<EOF
    server {
        listen 127.0.0.1:$P_NGX;
$proxy_location
    }
}
EOF
} >"$work/nginx.conf"

say "starting the test OpenID providers"
start_node idp-opaque "$root/tests/idp/server.mjs" '{"accessTokenFormat":"opaque"}'
ISS_OPAQUE=$(json "$REPLY" issuer)
start_node idp-jwt "$root/tests/idp/server.mjs" '{"accessTokenFormat":"jwt"}'
ISS_JWT=$(json "$REPLY" issuer)
OPAQUE=$(get_token "$ISS_OPAQUE")
JWT=$(get_token "$ISS_JWT")

# tollgate_config ISSUER LEVEL: one worker, a public API, an introspection API and a JWT API.
tollgate_config() {
  cat <<EOF
[listen]
address = "127.0.0.1:$P_TG"
admin_address = "127.0.0.1:$P_TG_ADM"
workers = 1

[log]
level = "$2"

[provider]
issuer = "$1"
introspection_client_id = "tollgate-introspector"
introspection_client_secret = "introspector-secret"

EOF
  api_public
  api_introspection
  api_jwt
}

# measure CASE PORT PATH [HEADER]: the server under callgrind must be listening on PORT.
measure() {
  local case=$1 port=$2 path=$3 header=${4:-} pid=$5
  python3 "$root/benches/callgrind/client.py" "$port" "$path" "$header" "$WARMUP" >/dev/null ||
    die "($case) warm-up failed"
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$root/benches/callgrind/client.py" "$port" "$path" "$header" "$REQUESTS" >"$work/$case.client" ||
    die "($case) requests failed"
  callgrind_control -d "$pid" >/dev/null 2>&1
  # The first dump is FILE.1 (the rest of the run goes to FILE at exit).
  for _ in $(seq 100); do
    [[ -s $work/callgrind.out.$case.run.1 ]] && break
    sleep 0.1
  done
  [[ -s $work/callgrind.out.$case.run.1 ]] || die "($case) callgrind wrote no dump"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for case in $CASES; do
  say "($case) under callgrind"
  case $case in
    b)
      (cd "$work" && exec valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.$case.run" \
        nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx.conf") >"$work/b.log" 2>&1 &
      pid=$!
      for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$P_NGX/" && break; sleep 0.1; done
      measure b "$P_NGX" /orders/1 "" "$pid"
      ;;
    c | d | e | f)
      issuer=$ISS_OPAQUE level=warn
      [[ $case == e ]] && issuer=$ISS_JWT
      [[ $case == f ]] && level=info
      tollgate_config "$issuer" "$level" >"$work/tollgate-$case.toml"
      (cd "$work" && exec valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.$case.run" \
        "$tollgate" run --config "$work/tollgate-$case.toml") >"$work/tollgate-$case.log" 2>&1 &
      pid=$!
      wait_ready "http://127.0.0.1:$P_TG_ADM/readyz" "$pid" "tollgate-$case"
      path=/intro/orders/1 header="Authorization: Bearer $OPAQUE"
      [[ $case == c ]] && path=/open/orders/1 header=""
      [[ $case == e ]] && path=/jwt/orders/1 header="Authorization: Bearer $JWT"
      measure "$case" "$P_TG" "$path" "$header" "$pid"
      ;;
    *) die "unknown case $case" ;;
  esac
done

say "report"
python3 "$root/benches/callgrind/report.py" "$work" "$REQUESTS" "$TOP" $CASES
