# The report of benches/callgrind.sh: instructions per request per case, the ratio to nginx (b),
# and each case's busiest functions by self cost, from the callgrind dumps in WORK.
#
#   python3 benches/callgrind/report.py WORK REQUESTS TOP CASE...
import re
import subprocess
import sys

work, requests, top, cases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
NAMES = {
    "b": "nginx reverse proxy, no auth",
    "c": "tollgate, public route",
    "d": "tollgate, cached introspected token",
    "e": "tollgate, cached JWT",
    "f": "tollgate, cached introspected token, access log on",
}


def self_costs(case):
    """Self cost per function, read from the dump itself: callgrind_annotate misattributes the
    frames that were already on the stack when the counters were zeroed."""
    names, costs, total = {}, {}, 0
    current, after_call = None, False
    with open(f"{work}/callgrind.out.{case}.run.1") as f:
        for line in f:
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                current = m.group(1)
            elif line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m.group(2):
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and current is not None:
                    costs[current] = costs.get(current, 0) + int(parts[1])
    rows = sorted(((c, names.get(k, k)) for k, c in costs.items()), reverse=True)
    return total, [(c, 100.0 * c / total, n) for c, n in rows]


def short(name):
    name = re.sub(r"^\S*?:", "", name, count=1) if name.startswith("/") or name.startswith("???") else name
    name = name.split(" [", 1)[0]
    return name.replace("|", "\\|")[:160]


results = {case: self_costs(case) for case in cases}
print(f"Instructions per request (user space), {requests} requests after a warm-up, one keep-alive connection:\n")
print("| case | instructions per request | × nginx (b) |")
print("|---|---:|---:|")
base = results.get("b", (None, None))[0]
for case in cases:
    total = results[case][0]
    ratio = f"{total / base:.2f}" if base else "–"
    print(f"| ({case}) {NAMES[case]} | {total / requests:,.0f} | {ratio} |")
for case in cases:
    total, rows = results[case]
    print(f"\n#### ({case}) the busiest functions (self cost)\n")
    print("| per request | share | function |")
    print("|---:|---:|---|")
    for cost, share, name in rows[:top]:
        print(f"| {cost / requests:,.0f} | {share:.1f}% | `{short(name)}` |")
