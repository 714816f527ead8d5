"""Markdown for benches/abuse.sh.

    python3 report.py RESULTS ABUSE_JSONL BALANCE BALANCE_CONNECTIONS BALANCE_SECONDS

RESULTS: "case round requests rps p50_us p99_us non2xx errors cpu_us" a line (case calm, abuse or
held: see abuse.sh);
ABUSE_JSONL: per abuse round, the abuser's counts and the gateway's closed connections by reason;
BALANCE: "label trial rps p99_us bad thread:tid=cpu%..." a line.
"""

import json
import statistics
import sys

LABELS = {
    "calm": "calm: wrk alone",
    "abuse": "abuse: wrk connects while the abuse is under way",
    "held": "held: wrk connected, then the abuse starts",
}


def load_rounds(path):
    rows = {}
    for line in open(path, encoding="utf-8"):
        if not line.strip() or line.startswith("case"):
            continue
        case, rnd, requests, rps, p50, p99, non2xx, errors, cpu_us = line.split()
        rows.setdefault(case, []).append(
            {
                "round": int(rnd),
                "rps": float(rps),
                "p50": float(p50),
                "p99": float(p99),
                "bad": int(non2xx) + int(errors),
                "cpu": float(cpu_us) / max(int(requests), 1),
            }
        )
    return rows


def rounds_table(rows):
    med = {c: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "cpu")} for c, rs in rows.items()}
    print("| run | req/s | p50 | p99 | tollgate CPU per request | non-2xx + socket errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in LABELS:
        rs = sorted(rows.get(case, []), key=lambda r: r["round"])
        if not rs:
            continue
        m = med[case]
        per_round = ", ".join(f"{r['rps']:.0f}" for r in rs)
        p99s = ", ".join(f"{r['p99'] / 1e3:.2f}" for r in rs)
        print(
            f"| {LABELS[case]} | {m['rps']:.0f} ({per_round}) | {m['p50'] / 1e3:.2f} ms | {m['p99'] / 1e3:.2f} ms ({p99s}) "
            f"| {m['cpu']:.1f} µs | {sum(r['bad'] for r in rs)} |"
        )
    print()
    print("Medians over the rounds (each round's figure in brackets). CPU: tollgate's utime+stime over")
    print("the requests wrk completed; under abuse it includes the work the abuse costs.")
    if "calm" not in med:
        return
    calm = med["calm"]
    calm_by_round = {r["round"]: r for r in rows["calm"]}
    verdict = lambda ok: "met" if ok else "**missed**"
    print()
    print("| vs calm | req/s ratio (target ≥ 0.9) | p99 ratio (target ≤ 1.5) | errors (target 0) | per-round req/s ratios |")
    print("|---|---:|---:|---:|---|")
    for case in ("abuse", "held"):
        if case not in med:
            continue
        paired = ", ".join(
            f"{r['rps'] / calm_by_round[r['round']]['rps']:.2f}"
            for r in sorted(rows[case], key=lambda r: r["round"])
            if r["round"] in calm_by_round
        )
        rps, p99 = med[case]["rps"] / calm["rps"], med[case]["p99"] / calm["p99"]
        bad = sum(r["bad"] for r in rows[case])
        print(
            f"| {case}/calm | {rps:.2f}: {verdict(rps >= 0.9)} | {p99:.2f}: {verdict(p99 <= 1.5)} "
            f"| {bad}: {verdict(bad == 0)} | {paired} |"
        )


def abuse_table(path):
    rounds = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if not rounds:
        return
    print()
    print("What the abuser did in each abuse run, from its start to its stop (held: its connections open at")
    print("once, sampled every 0.25 s, counting those still in the kernel's accept queue), and what the")
    print("gateway closed meanwhile (`tollgate_connections_closed_total` by reason):")
    print()
    print("| round, case | silent: opened / closed by gateway / held min–max / s to close | slow uploads: opened / closed / answers | non-reading: opened / shed / not shed | gateway closed | abuser CPU |")
    print("|---|---|---|---|---|---:|")
    for r in rounds:
        s, u, n = r["abuser"]["silent"], r["abuser"]["slow"], r["abuser"]["nonreading"]
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(u["statuses"].items())) or "none"
        closed = ", ".join(f"{k} {v}" for k, v in r["gateway_closed"].items()) or "none"
        print(
            f"| {r['round']}, {r['case']} | {s['opened']} / {s['closed_by_gateway']} / {s['held_min']}–{s['held_max']} / "
            f"{s.get('median_s_to_close', '-')} | {u['opened']} / {u['closed_by_gateway']} / {answers} "
            f"| {n['opened']} / {n['closed_by_gateway']} / {n['not_shed']} | {closed} | {r['abuser_cpu_pct']}% |"
        )


def balance_table(path, conns, secs):
    lines = [line.split() for line in open(path, encoding="utf-8") if line.strip()]
    if not lines:
        return
    print()
    print(f"Worker balance: `wrk -t1 -c{conns} -d{secs}s` on the cached-token route (`workers = 2`), each")
    print("trial with new connections; each thread's CPU (utime+stime over the run, % of one core; other")
    print("threads under 1% left out), the workers first:")
    print()
    print("| binary, trial | req/s | p99 | errors | tollgate-worker threads (by tid) | other threads |")
    print("|---|---:|---:|---:|---|---|")
    for label, trial, rps, p99, bad, *threads in lines:
        workers = [t.split("=") for t in threads if t.startswith("tollgate-worker")]
        others = [t.split("=") for t in threads if not t.startswith("tollgate-worker")]
        shown = lambda ts: ", ".join(f"{n.split(':')[0]} {p}%" for n, p in ts)
        print(
            f"| {label}, {trial} | {float(rps):.0f} | {float(p99) / 1e3:.2f} ms | {bad} "
            f"| {', '.join(p + '%' for _, p in workers)} | {shown(others) or '-'} |"
        )


def main():
    rows = load_rounds(sys.argv[1])
    rounds_table(rows)
    abuse_table(sys.argv[2])
    balance_table(sys.argv[3], sys.argv[4], sys.argv[5])


if __name__ == "__main__":
    main()
