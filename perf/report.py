#!/usr/bin/env python3
"""Tables for perf/harness.sh (python3 standard library only).

  report.py table RAW.jsonl     side-by-side markdown table + ratios
  report.py smoke RAW.jsonl     exit 1 unless every run served requests with 0 errors
  report.py validate RAW.jsonl  ringmesh-bench vs wrk / oha agreement table
  report.py syscalls RAW.jsonl  syscalls per request from strace -c summaries
  report.py line JSON           one-line summary of one ringmesh-bench --json result
"""
import json
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}"


def smoke(rows):
    bad = []
    seen = 0
    for r in rows:
        if "bench" not in r:
            continue
        seen += 1
        b = r["bench"]
        where = f'{r["topology"]}/{r["proxy"]}/{r["kind"]}'
        if b["requests"] == 0:
            bad.append(f"{where}: served no requests")
        if b["errors"]["total"] != 0:
            bad.append(f'{where}: {b["errors"]["total"]} errors {b["errors"]}')
        print(f'{where}: {b["requests"]} requests, {b["rps"]:.0f} rps, errors {b["errors"]["total"]}')
    if seen == 0:
        bad.append("no runs recorded")
    for b in bad:
        print(f"SMOKE FAIL: {b}")
    print(f"{seen - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


def summarize(rows):
    """(topology, proxy) -> metric -> median over repetitions."""
    per = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["topology"], r["proxy"])
        m = per[key]
        if r["kind"] == "rss":
            m["rss_idle_mib"].append(r["rss_idle_kb"] / 1024)
            m["rss_after_mib"].append(r["rss_after_kb"] / 1024)
            m["placement"].append(" ".join(dict.fromkeys(r["placement"].split())))
            continue
        b = r["bench"]
        k = r["kind"]
        cpu_s = r["cpu_ticks"] / r["clk_tck"]
        sent = max(b["sent"], 1)
        m[f"{k}_rps"].append(b["rps"])
        m[f"{k}_errors"].append(b["errors"]["total"])
        m[f"{k}_cpu_us"].append(cpu_s * 1e6 / sent)
        for p in ("p50", "p90", "p99", "p99.9"):
            m[f"{k}_{p}"].append(b["latency_us"][p])
    out = {}
    for key, m in per.items():
        out[key] = {k: (v[-1] if k == "placement" else (max(v) if k.endswith("_errors") else median(v))) for k, v in m.items()}
    return out


def table(rows):
    s = summarize(rows)
    direct = s.get(("direct", "nginx"), {})
    lines = [
        "| topology | proxy | closed-loop rps | p50 / p99 / p99.9 @2k rps (µs) | p99 added vs direct @2k (µs) | p50 / p99 / p99.9 @5k rps (µs) | proxy CPU µs/req closed / @5k | RSS idle / after (MiB) | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = [("direct", "nginx")] + sorted(k for k in s if k[0] != "direct")
    for key in order:
        if key not in s:
            continue
        m = s[key]
        added = None
        if key[0] != "direct" and m.get("rate2000_p99") is not None and direct.get("rate2000_p99") is not None:
            added = m["rate2000_p99"] - direct["rate2000_p99"]
        errors = sum(v for k, v in m.items() if k.endswith("_errors"))
        lines.append(
            f'| {key[0]} | {key[1]} | {fmt(m.get("closed_rps"))} '
            f'| {fmt(m.get("rate2000_p50"))} / {fmt(m.get("rate2000_p99"))} / {fmt(m.get("rate2000_p99.9"))} '
            f'| {fmt(added) if key[0] != "direct" else "–"} '
            f'| {fmt(m.get("rate5000_p50"))} / {fmt(m.get("rate5000_p99"))} / {fmt(m.get("rate5000_p99.9"))} '
            f'| {fmt(m.get("closed_cpu_us"), 1)} / {fmt(m.get("rate5000_cpu_us"), 1)} '
            f'| {fmt(m.get("rss_idle_mib"), 1)} / {fmt(m.get("rss_after_mib"), 1)} | {errors} |'
        )
    lines.append("")
    lines.append("For `direct`, the CPU and RSS columns are nginx's own. In `sidecar-pair` they are the sum of both proxies.")
    topologies = sorted({k[0] for k in s if k[0] != "direct"})
    if any((t, "ringmesh") in s and (t, "envoy") in s for t in topologies):
        lines += [
            "",
            "Ratios ringmesh / Envoy (targets for one-proxy: rps ≥ 3, CPU/req ≤ 0.33, p99 added @2k ≤ 0.5, idle RSS ≤ 8 MiB):",
            "",
            "| topology | closed-loop rps | CPU/req closed | CPU/req @5k | p99 @2k | p99 added @2k | p99 @5k | RSS idle | ringmesh idle RSS (MiB) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t in topologies:
            r, e = s.get((t, "ringmesh")), s.get((t, "envoy"))
            if not r or not e:
                continue
            d2 = direct.get("rate2000_p99")
            ra = r["rate2000_p99"] - d2 if d2 is not None else None
            ea = e["rate2000_p99"] - d2 if d2 is not None else None
            lines.append(
                f'| {t} | {ratio(r.get("closed_rps"), e.get("closed_rps"))} '
                f'| {ratio(r.get("closed_cpu_us"), e.get("closed_cpu_us"))} '
                f'| {ratio(r.get("rate5000_cpu_us"), e.get("rate5000_cpu_us"))} '
                f'| {ratio(r.get("rate2000_p99"), e.get("rate2000_p99"))} '
                f'| {ratio(ra, ea) if ea and ea > 0 else "–"} '
                f'| {ratio(r.get("rate5000_p99"), e.get("rate5000_p99"))} '
                f'| {ratio(r.get("rss_idle_mib"), e.get("rss_idle_mib"))} | {fmt(r.get("rss_idle_mib"), 1)} |'
            )
    places = {f"{k[0]}/{k[1]}": m.get("placement") for k, m in s.items() if m.get("placement")}
    if places:
        lines += ["", "Thread placement seen (thread=allowed CPUs):", ""]
        for k, p in sorted(places.items()):
            lines.append(f"- {k}: `{p.strip()}`")
    print("\n".join(lines))
    return 0


def validate(rows):
    per = defaultdict(lambda: defaultdict(list))
    for r in rows:
        m = per[(r["target"], r["mode"], r["tool"])]
        for k in ("rps", "p50", "p90", "p99", "errors", "send_lag_p50"):
            if r.get(k) is not None:
                m[k].append(r[k])
    med = {k: {mk: median(v) for mk, v in m.items()} for k, m in per.items()}
    lines = [
        "| target | mode | reference tool | rps ref / ours (ratio) | p50 µs ref / ours (ratio) | p90 µs ref / ours (ratio) | p99 µs ref / ours (ratio) | errors ref / ours |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (target, mode, tool) in sorted(k for k in med if k[2] != "ringmesh-bench"):
        ref = med[(target, mode, tool)]
        ours = med.get((target, mode, "ringmesh-bench"))
        if not ours:
            continue
        cells = []
        for k in ("rps", "p50", "p90", "p99"):
            cells.append(f"{fmt(ref.get(k))} / {fmt(ours.get(k))} ({ratio(ours.get(k), ref.get(k))})")
        lines.append(
            f"| {target} | {mode} | {tool} | " + " | ".join(cells) + f' | {fmt(ref.get("errors"))} / {fmt(ours.get("errors"))} |'
        )
    lags = [f'{t} {m}: {fmt(v.get("send_lag_p50"), 1)} µs' for (t, m, tool), v in sorted(med.items()) if v.get("send_lag_p50") is not None]
    if lags:
        lines += ["", "ringmesh-bench median send lag behind its schedule (p50): " + "; ".join(lags) + "."]
    print("\n".join(lines))
    return 0


def parse_strace(path):
    """strace -c summary -> {syscall: calls}."""
    calls = {}
    with open(path) as f:
        for raw in f:
            parts = raw.split()
            if len(parts) < 5 or not parts[0].replace(".", "", 1).isdigit():
                continue
            name = parts[-1]
            if name == "total":
                continue
            # columns: % time, seconds, usecs/call, calls, [errors], syscall
            calls[name] = int(parts[3])
    return calls


def syscalls(rows):
    per = {r["variant"]: (r["requests"], parse_strace(r["strace"])) for r in rows}
    names = set()
    for _, c in per.values():
        names.update(c)
    top = sorted(names, key=lambda n: -max(c.get(n, 0) / max(req, 1) for req, c in per.values()))[:8]
    variants = list(per)
    lines = [
        "| syscall | " + " | ".join(v.replace(":-", "").replace(":", " --io-driver ") for v in variants) + " |",
        "| --- | " + " | ".join("---:" for _ in variants) + " |",
    ]
    lines.append("| **total per request** | " + " | ".join(
        f"**{sum(per[v][1].values()) / max(per[v][0], 1):.2f}**" for v in variants) + " |")
    for n in top:
        lines.append(f"| {n} | " + " | ".join(f"{per[v][1].get(n, 0) / max(per[v][0], 1):.2f}" for v in variants) + " |")
    lines.append("| requests | " + " | ".join(str(per[v][0]) for v in variants) + " |")
    print("\n".join(lines))
    return 0


def line(text):
    d = json.loads(text)
    lat = d["latency_us"]
    print(f'{d["rps"]:.0f} rps, p50 {lat["p50"]:.0f} us, p99 {lat["p99"]:.0f} us, errors {d["errors"]["total"]}')
    return 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("table", "smoke", "validate", "line", "syscalls"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "line":
        return line(sys.argv[2])
    rows = load(sys.argv[2])
    return {"table": table, "smoke": smoke, "validate": validate, "syscalls": syscalls}[sys.argv[1]](rows)


if __name__ == "__main__":
    sys.exit(main())
