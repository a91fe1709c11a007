"""Summarise shared-harness results (JSON Lines from `loadgen.py --out`) as the table of
docs/performance.md: saturation, µs per delivery, idle KiB/socket, deflate and 2-worker
figures, each peer also as a ratio to peers A and C of the SAME run.

    python -m roomserver.loadtests.bench_table RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

P99_LIMIT = 100.0


def _runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ok(step: dict[str, Any]) -> bool:
    return (step["p99_ms"] <= P99_LIMIT and step["lost"] <= 0 and step["sent_per_s"] >= 0.95 * step["rate"])


def _saturation(run: dict[str, Any]) -> dict[str, Any]:
    """Highest step rate that was OK at every repeat tried (and never failed before it)."""
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for step in run["steps"]:
        by_rate.setdefault(step["rate"], []).append(step)
    best: dict[str, Any] | None = None
    for rate in sorted(by_rate):
        steps = by_rate[rate]
        if not all(_ok(s) for s in steps):
            break
        best = max(steps, key=lambda s: s["delivered_per_s"])
    if best is None:
        return {"rate": None, "deliv": None, "us": None, "p99": None}
    us = [1e4 * s["server_cpu_pct"] / s["delivered_per_s"] for s in by_rate[best["rate"]] if s["delivered_per_s"]]
    return {"rate": best["rate"], "deliv": best["delivered_per_s"], "us": min(us),
            "p99": max(s["p99_ms"] for s in by_rate[best["rate"]]),
            "noisy": any(s.get("noisy") for s in by_rate[best["rate"]])}


def _us_at(run: dict[str, Any], rate: float) -> float | None:
    vals = [1e4 * s["server_cpu_pct"] / s["delivered_per_s"] for s in run["steps"]
            if s["rate"] == rate and s["delivered_per_s"]]
    return min(vals) if vals else None


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "–" if x is None else format(x, spec)


def _ratio(x: float | None, base: float | None) -> str:
    return "–" if not x or not base else f"{x / base:.2f}×"


def table(results: Path) -> str:
    ramp = {r["peer"]: r for r in _runs(results / "ramp.jsonl")}
    idle = {r["peer"]: r for r in _runs(results / "idle.jsonl")}
    defl = {r["peer"]: r for r in _runs(results / "deflate.jsonl")}
    plain = {r["peer"]: r for r in _runs(results / "nodeflate.jsonl")}
    w2 = {r["peer"]: r for r in _runs(results / "workers2.jsonl")}
    w1 = {r["peer"]: r for r in _runs(results / "workers1.jsonl")}
    sat = {peer: _saturation(run) for peer, run in ramp.items()}
    a = next((v for k, v in sat.items() if k.startswith("A-")), {})
    c = next((v for k, v in sat.items() if k.startswith("C-")), {})
    out = ["| peer | saturation msg/s | deliveries/s | vs A | vs C | p99 ms there | server µs/delivery "
           "| idle KiB/socket | deflate µs/delivery (× plain) | 2 workers vs 1 (sat. msg/s) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for peer in sorted(set(ramp) | set(idle)):
        s = sat.get(peer, {})
        kib = idle.get(peer, {}).get("rss_per_conn_kib")
        dcost = "–"
        rates = sorted({st["rate"] for st in defl[peer]["steps"]}) if peer in defl else []
        if rates and peer in plain:
            d, p = _us_at(defl[peer], rates[-1]), _us_at(plain[peer], rates[-1])
            neg = defl[peer].get("deflate_negotiated", 0)
            dcost = f"{_fmt(d)} ({_ratio(d, p)}; negotiated on {neg})"
        workers = "–"
        if peer in w2 and peer in w1:
            s2, s1 = _saturation(w2[peer])["rate"], _saturation(w1[peer])["rate"]
            workers = f"{_fmt(s2, 'g')} vs {_fmt(s1, 'g')}"
        out.append(f"| {peer} | {_fmt(s.get('rate'), 'g')} | {_fmt(s.get('deliv'))} "
                   f"| {_ratio(s.get('deliv'), a.get('deliv'))} | {_ratio(s.get('deliv'), c.get('deliv'))} "
                   f"| {_fmt(s.get('p99'), '.1f')} | {_fmt(s.get('us'), '.1f')} | {_fmt(kib, 'g')} "
                   f"| {dcost} | {workers} |")
    return "\n".join(out)


def main() -> int:
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/benchres")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
