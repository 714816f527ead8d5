"""Helpers for benches/load.sh.

    python3 report.py wrk FILE          one wrk --latency output -> "requests rps p50_us p99_us non2xx errors"
    python3 report.py table RESULTS     the per-round TSV -> Markdown: medians per case, then ratios
    python3 report.py handshakes FILE   the handshake runs' TSV -> Markdown: connections/s, CPU, ratios
    python3 report.py executable NAME   cargo's JSON messages on stdin -> the path of target NAME's binary
"""

import re
import statistics
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}
LABELS = {
    "a": "(a) upstream direct (nginx `return 200`)",
    "b": "(b) nginx reverse proxy, no auth",
    "c": "(c) tollgate, public route (no policy)",
    "d": "(d) tollgate, cached introspected token",
    "e": "(e) tollgate, cached JWT",
    "f": "(f) = (d) with the access log on (level info, the default)",
    "d0": "(d0) = (d) served by BASELINE_BIN",
    "t": "(t) nginx terminating TLS, reverse proxy, no auth",
    "u": "(u) tollgate terminating TLS, cached introspected token",
}


def duration_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(path):
    out = open(path, encoding="utf-8").read()
    requests = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))
    rps = float(re.search(r"^Requests/sec:\s*([0-9.]+)", out, re.M).group(1))
    p50 = duration_us(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = duration_us(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_err = sum(int(g) for g in errors.groups()) if errors else 0
    print(requests, f"{rps:.1f}", f"{p50:.0f}", f"{p99:.0f}", int(non2xx.group(1)) if non2xx else 0, n_err)


def table(path):
    rows = {}
    for line in open(path, encoding="utf-8"):
        if not line.strip() or line.startswith("case"):
            continue
        case, rnd, requests, rps, p50, p99, cpu_us, non2xx, errors, user_us = line.split()
        rows.setdefault(case, []).append(
            {
                "round": int(rnd),
                "rps": float(rps),
                "p50": float(p50),
                "p99": float(p99),
                "cpu": float(cpu_us) / int(requests),
                "user": float(user_us) / int(requests),
                "bad": int(non2xx) + int(errors),
            }
        )
    med = {
        case: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "cpu", "user")}
        for case, rs in rows.items()
    }
    print("| case | req/s | p50 | p99 | proxy CPU per request | of which user space | non-2xx + socket errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in sorted(rows):
        m = med[case]
        cpu = "-" if case == "a" else f"{m['cpu']:.1f} µs"
        user = "-" if case == "a" else f"{m['user']:.1f} µs"
        bad = sum(r["bad"] for r in rows[case])
        rps_all = ", ".join(f"{r['rps']:.0f}" for r in sorted(rows[case], key=lambda r: r["round"]))
        print(
            f"| {LABELS.get(case, case)} | {m['rps']:.0f} ({rps_all}) | {m['p50'] / 1e3:.2f} ms "
            f"| {m['p99'] / 1e3:.2f} ms | {cpu} | {user} | {bad} |"
        )
    print()
    print("Medians over the rounds (req/s of each round in brackets). CPU: utime+stime of the proxy's")
    print("processes (nginx: master and workers; the upstream's CPU is not counted) over the requests")
    print("wrk completed in the round; user space: utime alone (the rest is the kernel's, mostly")
    print("loopback TCP). (a)'s columns would be the upstream's own CPU, so they are left out.")
    if "d" in med:
        within_table(rows, med)
    if "d0" in med:
        baseline_table(rows, med)
    if "t" in med and "u" in med:
        vs_table(rows, med, "u", "t", "vs nginx TLS (t)")
    if "b" not in med:
        return
    print()
    print("| vs nginx (b) | req/s ratio (target ≥ 1.0) | CPU/request ratio (target ≤ 1.0) | user-space CPU ratio | p99 ratio (target ≤ 1.0) | per-round req/s ratios |")
    print("|---|---:|---:|---:|---:|---|")
    b_by_round = {r["round"]: r for r in rows["b"]}
    for case in sorted(rows):
        if case in ("a", "b", "t", "u"):
            continue
        m, b = med[case], med["b"]
        paired = ", ".join(
            f"{r['rps'] / b_by_round[r['round']]['rps']:.2f}"
            for r in sorted(rows[case], key=lambda r: r["round"])
            if r["round"] in b_by_round
        )
        print(
            f"| {case}/b | {m['rps'] / b['rps']:.2f} | {m['cpu'] / b['cpu']:.2f} | {m['user'] / b['user']:.2f} "
            f"| {m['p99'] / b['p99']:.2f} | {paired} |"
        )


def within_table(rows, med):
    """The issue's two targets within tollgate: the access log (f/d) and a JWT (e/d), each ≤ 1.05."""
    pairs = [(c, t) for c, t in (("f", "the access log on, f/d"), ("e", "a cached JWT, e/d")) if c in med]
    if not pairs:
        return
    d_by_round = {r["round"]: r for r in rows["d"]}
    print()
    print("| against (d), the same proxy | req/s ratio | CPU/request ratio (target ≤ 1.05) | p99 ratio | per-round CPU/request ratios |")
    print("|---|---:|---:|---:|---|")
    for case, title in pairs:
        m, d = med[case], med["d"]
        paired = ", ".join(
            f"{r['cpu'] / d_by_round[r['round']]['cpu']:.3f}"
            for r in sorted(rows[case], key=lambda r: r["round"])
            if r["round"] in d_by_round
        )
        print(f"| {title} | {m['rps'] / d['rps']:.3f} | {m['cpu'] / d['cpu']:.3f} | {m['p99'] / d['p99']:.3f} | {paired} |")


def vs_table(rows, med, case, base, title):
    """One case against another measured in the same rounds."""
    by_round = {r["round"]: r for r in rows[base]}
    paired = ", ".join(
        f"{r['rps'] / by_round[r['round']]['rps']:.2f}"
        for r in sorted(rows[case], key=lambda r: r["round"])
        if r["round"] in by_round
    )
    m, b = med[case], med[base]
    print()
    print(f"| {title} | req/s ratio (target ≥ 1.0) | CPU/request ratio | p99 ratio | per-round req/s ratios |")
    print("|---|---:|---:|---:|---|")
    print(f"| {case}/{base} | {m['rps'] / b['rps']:.2f} | {m['cpu'] / b['cpu']:.2f} | {m['p99'] / b['p99']:.2f} | {paired} |")


def handshakes(path):
    """New TLS connections per second and the server's CPU per connection, per server and mode."""
    runs = {}
    for line in open(path, encoding="utf-8"):
        if not line.strip() or line.startswith("server"):
            continue
        server, mode, rnd, conns, secs, resumed, failures, non2xx, cpu_us = line.split()
        conns = int(conns)
        runs.setdefault((server, mode), []).append(
            {
                "round": int(rnd),
                "rate": conns / float(secs),
                "cpu": float(cpu_us) / max(conns, 1),
                "resumed": int(resumed) / max(conns, 1),
                "bad": int(failures) + int(non2xx),
            }
        )
    med = {k: {f: statistics.median(r[f] for r in rs) for f in ("rate", "cpu", "resumed")} for k, rs in runs.items()}
    names = {"t": "nginx (t)", "u": "tollgate (u)"}
    print("| server | handshakes | connections/s | server CPU per connection | resumed | failures + non-2xx |")
    print("|---|---|---:|---:|---:|---:|")
    for (server, mode), m in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mm = med[(server, mode)]
        rates = ", ".join(f"{r['rate']:.0f}" for r in sorted(m, key=lambda r: r["round"]))
        bad = sum(r["bad"] for r in m)
        print(
            f"| {names.get(server, server)} | {mode} | {mm['rate']:.0f} ({rates}) | {mm['cpu']:.0f} µs "
            f"| {mm['resumed'] * 100:.0f}% | {bad} |"
        )
    print()
    print("| tollgate / nginx | connections/s ratio (target ≥ 1.0) | CPU per connection ratio |")
    print("|---|---:|---:|")
    for mode in ("full", "resumed"):
        if ("u", mode) in med and ("t", mode) in med:
            u, t = med[("u", mode)], med[("t", mode)]
            print(f"| {mode} | {u['rate'] / t['rate']:.2f} | {u['cpu'] / t['cpu']:.2f} |")


def executable(name):
    import json

    for line in sys.stdin:
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
            print(m["executable"])
            return
    sys.exit(f"cargo built no executable named {name}")


def baseline_table(rows, med):
    """(d) against (d0), the same case served by the baseline binary."""
    d, d0 = med["d"], med["d0"]
    d0_by_round = {r["round"]: r for r in rows["d0"]}
    paired = ", ".join(
        f"{r['cpu'] / d0_by_round[r['round']]['cpu']:.3f}"
        for r in sorted(rows["d"], key=lambda r: r["round"])
        if r["round"] in d0_by_round
    )
    print()
    print("| vs the baseline (d0) | req/s ratio | CPU/request ratio | p99 ratio | per-round CPU/request ratios |")
    print("|---|---:|---:|---:|---|")
    print(f"| d/d0 | {d['rps'] / d0['rps']:.3f} | {d['cpu'] / d0['cpu']:.3f} | {d['p99'] / d0['p99']:.3f} | {paired} |")


if __name__ == "__main__":
    {"wrk": parse_wrk, "table": table, "handshakes": handshakes, "executable": executable}[sys.argv[1]](sys.argv[2])
