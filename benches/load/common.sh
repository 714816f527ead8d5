# Shared by the benchmark scripts (benches/*.sh); sourced, not run.
#
# The sourcing script sets, before sourcing: root (the repository), work (its work directory),
# KEEP, and optionally TOLLGATE_BIN. This file sets started and pids (every process started here,
# stopped on exit), installs the EXIT trap that stops them, finds the tools (wrk and nginx-light
# installed with apt-get when missing and running as root), sets tollgate (the binary: TOLLGATE_BIN
# or a fresh `cargo build --release`) and clk_tck, and defines the helpers below. A script that sets
# with_bench (a `[[bench]]` name) builds tollgate with that bench instead (`bench_binary NAME
# tollgate`): cargo builds a bench with the dev-dependencies' features, so a separate
# `--bin tollgate` build would recompile the crate on every run, once for each feature set.
# shellcheck shell=bash
started=$(date +%s)
pids=()

say() { printf '[%4ds] %s\n' "$(($(date +%s) - started))" "$*" >&2; }
die() { say "error: $*"; exit 1; }

cleanup() {
  local status=$?
  set +e
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [[ $KEEP == 1 || $status != 0 ]]; then
    say "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "install ${missing[*]} (apt-get install ${missing[*]}) or run as root"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >"$work/apt.log" 2>&1 ||
    { apt-get update -q >>"$work/apt.log" 2>&1 && apt-get install -y -q "${missing[@]}" >>"$work/apt.log" 2>&1; } ||
    die "apt-get install ${missing[*]} failed: see $work/apt.log"
fi
for tool in node python3 curl; do command -v "$tool" >/dev/null || die "$tool is needed"; done
if [[ ! -d $root/tests/idp/node_modules/oidc-provider ]]; then
  say "installing the test OpenID provider (npm ci --prefix tests/idp)"
  npm ci --prefix "$root/tests/idp" >"$work/npm.log" 2>&1 || die "npm ci failed: see $work/npm.log"
fi
if [[ -n ${TOLLGATE_BIN:-} ]]; then
  tollgate=$TOLLGATE_BIN
  [[ -x $tollgate ]] || die "no tollgate binary at $tollgate"
elif [[ -z ${with_bench:-} ]]; then
  say "cargo build --release"
  (cd "$root" && cargo build --release --bin tollgate) >"$work/build.log" 2>&1 ||
    die "cargo build --release failed: see $work/build.log"
  tollgate=$root/target/release/tollgate
  [[ -x $tollgate ]] || die "no tollgate binary at $tollgate"
fi

clk_tck=$(getconf CLK_TCK)

# --- helpers --------------------------------------------------------------------------------------
# N free loopback ports, all bound at once (so distinct), below the kernel's ephemeral range (so no
# port=0 listener or outgoing connection can take one before its server binds it).
free_ports() {
  python3 -c 'import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
held = []
for port in random.sample(range(max(1024, low - 12000), low), 400):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    held.append(s)
    if len(held) == int(sys.argv[1]):
        break
print(*[s.getsockname()[1] for s in held])' "$1"
}

# Waits until FILE has a first line (up to 30 s) and prints it.
first_line() {
  local file=$1 pid=$2
  for _ in $(seq 300); do
    if [[ -s $file ]] && IFS= read -r line <"$file"; then printf '%s\n' "$line"; return; fi
    kill -0 "$pid" 2>/dev/null || die "$(basename "$file" .out) exited: $(tail -5 "${file%.out}.err")"
    sleep 0.1
  done
  die "$(basename "$file" .out) printed nothing in 30 s"
}

# Starts a node server that prints one JSON line when listening and exits on stdin EOF; its stdin
# is a FIFO this shell holds open. Sets REPLY to that line.
start_node() {
  local name=$1
  shift
  mkfifo "$work/$name.in"
  node "$@" <"$work/$name.in" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  local fd
  exec {fd}>"$work/$name.in"
  REPLY=$(first_line "$work/$name.out" "${pids[-1]}")
}

json() { python3 -c 'import json, sys; v = json.loads(sys.argv[1])
for k in sys.argv[2:]: v = v[k]
print(v)' "$@"; }

get_token() {
  curl -sS -f -u orders-app:orders-secret -d grant_type=client_credentials -d scope=mulescope "$1/v1/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

wait_ready() {
  local url=$1 pid=$2 name=$3
  for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]] && return
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(tail -5 "$work/$name.log")"
    sleep 0.1
  done
  die "$name not ready in 30 s: $(tail -5 "$work/$name.log")"
}

# proc_ticks FIELDS PID...: the given fields of /proc/PID/stat (counted from its 3rd, so 11 is
# utime and 12 stime), in clock ticks, summed over the processes (all their threads).
proc_ticks() {
  local fields=$1 total=0 p stat f i
  shift
  for p in "$@"; do
    stat=$(<"/proc/$p/stat")
    read -r -a f <<<"${stat##*) }"
    for i in $fields; do total=$((total + f[i])); done
  done
  echo "$total"
}

# utime+stime in clock ticks, summed over the given processes (all their threads).
cpu_ticks() { proc_ticks "11 12" "$@"; }

# utime alone: the user-space share of cpu_ticks.
user_ticks() { proc_ticks 11 "$@"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }


nginx_common() {
  local name=$1
  mkdir -p "$work/$name"
  cat <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$name/body;
    proxy_temp_path $work/$name/proxy;
    fastcgi_temp_path $work/$name/fastcgi;
    uwsgi_temp_path $work/$name/uwsgi;
    scgi_temp_path $work/$name/scgi;
    keepalive_requests 1000000;
EOF
}

start_nginx() {
  local name=$1
  nginx -p "$work/$name" -e "$work/$name/error.log" -c "$work/$name.conf" >"$work/$name.log" 2>&1 &
  pids+=($!)
  eval "PID_${name^^}=$!"
}

# The upstream as nginx's keep-alive pool `backend` (the bare proxy's side of every comparison).
nginx_backend() {
  cat <<EOF
    upstream backend {
        server 127.0.0.1:$P_UP;
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
}

# start_upstream PORT: the upstream the benchmarks proxy to, nginx answering `return 200` with a
# small JSON body on 127.0.0.1:PORT; sets PID_UPSTREAM.
start_upstream() {
  {
    nginx_common upstream
    cat <<EOF
    server {
        listen 127.0.0.1:$1;
        default_type application/json;
        location / { return 200 '{"orders":[{"id":1,"status":"shipped"}]}\n'; }
    }
}
EOF
  } >"$work/upstream.conf"
  start_nginx upstream
}

# bench_binary NAME [TARGET]: builds the release binary of `[[bench]] NAME` and prints its path, or
# that of TARGET built with it (`tollgate`: the gateway, as cargo builds it for benches).
bench_binary() {
  local name=$1 target=${2:-$1} log=$work/build-$1.log path
  # Built first, then asked for its path (a no-op build): nothing reads cargo's output while it compiles.
  (cd "$root" && cargo build --release --bench "$name") >"$log" 2>&1 ||
    die "building bench $name failed: see $log"
  path=$(cd "$root" && cargo build --release --bench "$name" --message-format=json 2>>"$log" |
    python3 "$root/benches/load/report.py" executable "$target") || die "finding $target failed: see $log"
  [[ -x $path ]] || die "no $target built: see $log"
  echo "$path"
}

# The machine, for a report: CPUs, model, memory, kernel.
machine() {
  echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
}

# nginx as a bare reverse proxy to the upstream (a server block's location), the baseline of
# every comparison: keep-alive to the upstream, the forwarding headers tollgate sets too.
proxy_location='        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }'

# API blocks of a tollgate config, in front of the upstream: a public route, a JWT API, and
# (below) an introspection API.
api_public() {
  cat <<EOF

[[api]]
name = "open"
path_prefix = "/open"
upstream = "http://127.0.0.1:$P_UP"
skip_client_id_validation = true

[[api.rule]]
public = true
EOF
}
api_jwt() {
  cat <<EOF

[[api]]
name = "jwt"
path_prefix = "/jwt"
upstream = "http://127.0.0.1:$P_UP"
validation = "jwt"
audience = ["api://default"]
scopes = ["mulescope"]
clients = ["orders-app"]
EOF
}
# The introspection API in front of the upstream on port $P_UP, as a config block to append.
api_introspection() {
  cat <<EOF

[[api]]
name = "intro"
path_prefix = "/intro"
upstream = "http://127.0.0.1:$P_UP"
validation = "introspection"
scopes = ["mulescope"]
clients = ["orders-app"]
EOF
}

# make_certificate DIR rsa|ec: a CA and a server certificate for localhost and 127.0.0.1 signed by
# it (DIR/ca.crt, DIR/server.crt as leaf + CA, DIR/server.key in PKCS#8), with openssl.
make_certificate() {
  local dir=$1 type=$2 keyopt
  mkdir -p "$dir"
  case $type in
    rsa) keyopt=(-newkey rsa:2048) ;;
    ec) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    *) die "KEY_TYPE must be rsa or ec, not $type" ;;
  esac
  {
    openssl req -x509 "${keyopt[@]}" -nodes -days 2 -subj "/CN=tollgate bench CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
      openssl req "${keyopt[@]}" -nodes -subj "/CN=localhost" -keyout "$dir/server.key" -out "$dir/server.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf" &&
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -extfile "$dir/ext.cnf" -out "$dir/leaf.crt" &&
      cat "$dir/leaf.crt" "$dir/ca.crt" >"$dir/server.crt"
  } >"$dir/openssl.log" 2>&1 || die "openssl could not make the test certificate: see $dir/openssl.log"
}
