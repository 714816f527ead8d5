"""Markdown for benches/spray.sh: the table header, and one row per mode from the clients' outputs.

    python3 benches/spray/report.py header
    python3 benches/spray/report.py row MODE WORK SECONDS CALLS BURST RSS_BEFORE_KIB RSS_AFTER_KIB
"""
import json
import sys
from pathlib import Path

COLUMNS = [
    "mode",
    "provider calls",
    "bound (rate x s + burst)",
    "new tokens 200",
    "first try",
    "after one Retry-After",
    "slowest new token (s)",
    "cached requests",
    "cached errors",
    "sprayer requests (req/s)",
    "sprayer statuses",
    "RSS before -> after (MiB)",
]


def header():
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))


def row(mode, work, seconds, calls, burst, rss_before, rss_after):
    work = Path(work)

    def read(role):
        return json.loads((work / f"{mode}-{role}.json").read_text())

    spray, new, cached = read("spray"), read("new"), read("cached")
    rate = int(burst)
    bound = round(rate * float(seconds) + rate)
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(spray["statuses"].items()))

    def mib(kib):
        return f"{int(kib) / 1024:.1f}"

    cells = [
        mode,
        calls,
        f"{bound} ({seconds} s)",
        f"{new['ok']}/{new['tokens']}",
        new["first_try"],
        new["within_retry_after"] - new["first_try"],
        f"{new['max_seconds']:.1f}",
        cached["requests"],
        cached["errors"],
        f"{spray['requests']} ({spray['rps']})",
        statuses,
        f"{mib(rss_before)} -> {mib(rss_after)}",
    ]
    print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "header":
        header()
    else:
        row(*sys.argv[2:])
