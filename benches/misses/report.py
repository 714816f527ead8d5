"""The Markdown report of benches/misses.sh.

    python3 report.py ROWS_TSV

ROWS_TSV has one line per phase: variant, rate, phase (miss or hit), the generator's JSON line, the
introspection calls, the distinct tokens and the new TCP connections counted at the fake during the
phase, tollgate's CPU time over the phase in microseconds, and how busy the machine's CPUs were
(percent, whoever used them).
"""
import json
import sys

TARGET_RATE = 2000
TARGET_P99_MS = 60


def rows(path):
    out = []
    with open(path) as f:
        for line in f:
            variant, rate, phase, gen, calls, distinct, conns, cpu_us, busy = line.rstrip("\n").split("\t")
            g = json.loads(gen)
            ok = g["statuses"].get("200", 0)
            non2xx = sum(n for s, n in g["statuses"].items() if not s.startswith("2"))
            out.append({
                "variant": variant, "rate": int(rate), "phase": phase, "g": g, "ok": ok,
                "non2xx": non2xx, "calls": int(calls), "distinct": int(distinct),
                "conns": int(conns), "cpu_us": int(cpu_us), "busy": int(busy),
            })
    return out


def check(r):
    """Every miss is exactly one call (calls == distinct == 200s); a hit is none."""
    if r["phase"] == "hit":
        return "ok (no call)" if r["calls"] == 0 else f"**{r['calls']} calls**"
    if r["calls"] == r["distinct"] == r["ok"]:
        return "ok"
    return f"**calls {r['calls']}, distinct {r['distinct']}, 200s {r['ok']}**"


def statuses(g):
    other = {s: n for s, n in g["statuses"].items() if not s.startswith("2")}
    return ", ".join(f"{s}: {n}" for s, n in sorted(other.items())) or "0"


def errors(g):
    return ", ".join(f"{k}: {n}" for k, n in sorted(g.get("error_kinds", {}).items())) or "0"


def per_request(r):
    return r["cpu_us"] / r["g"]["sent"] if r["g"]["sent"] else 0.0


def main(path):
    """Prints the report; exits 1 when a phase broke one call per miss (after printing it)."""
    rs = rows(path)
    print("| variant | phase | rate asked → achieved (/s) | p50 / p90 / p99 / max (ms) | 200 | non-2xx | errors "
          "| provider calls | distinct at the fake | one call per miss | new provider connections "
          "| tollgate CPU per request (µs) | sent late p99 (ms) | generator lag p99 (ms) | machine busy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        g = r["g"]
        print(f"| {r['variant']} | {r['phase']} | {r['rate']} → {g['rate']:.0f} "
              f"| {g['p50_ms']:.1f} / {g['p90_ms']:.1f} / {g['p99_ms']:.1f} / {g['max_ms']:.1f} "
              f"| {r['ok']} | {statuses(g)} | {errors(g)} | {r['calls']} | {r['distinct']} | {check(r)} "
              f"| {r['conns']} | {per_request(r):.0f} | {g['late_p99_ms']:.1f} | {g['lag_p99_ms']:.1f} | {r['busy']}% |")
    print()
    by = {(r["variant"], r["rate"], r["phase"]): r for r in rs}
    for (variant, rate, phase), r in by.items():
        if phase != "miss":
            continue
        hit = by.get((variant, rate, "hit"))
        if hit and per_request(hit):
            print(f"- {variant}, {rate}/s: CPU per miss {per_request(r):.0f} µs, per hit "
                  f"{per_request(hit):.0f} µs (miss/hit {per_request(r) / per_request(hit):.1f}x); "
                  f"{r['g']['connections']} client connections opened for the misses")
    for (variant, rate, phase), r in by.items():
        if phase != "miss" or rate != TARGET_RATE:
            continue
        g = r["g"]
        every = r["ok"] == g["sent"] and g["errors"] == 0
        kept_up = g["rate"] >= 0.98 * rate
        met = every and kept_up and g["p99_ms"] < TARGET_P99_MS
        why = "" if every else f"; {r['ok']} of {g['sent']} answered 200, {g['errors']} errors"
        why += "" if kept_up else f"; {g['rate']:.0f}/s achieved"
        print(f"- target, {variant}: p99 < {TARGET_P99_MS} ms at {TARGET_RATE:,} new tokens/s: "
              f"**{'met' if met else 'missed'}**, p99 {g['p99_ms']:.1f} ms{why}")
    broken = [r for r in rs if not check(r).startswith("ok")]
    if broken:
        print(f"- **one call per miss broken** in {len(broken)} phase(s): see the table")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
