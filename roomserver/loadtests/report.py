"""The replay report: a summary table (text), the result as JSON, and a latency-over-time PNG.

The PNG needs matplotlib (the `[loadtest]` extra); without it the plot is skipped and
everything else is written as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

RESULT = "result.json"
PLOT = "latency.png"
SUMMARY = "summary.txt"


def _ms(spread: dict[str, Any]) -> str:
    if not spread.get("count"):
        return "-"
    return "  ".join(f"{k} {spread[k]:.1f}" for k in ("p50", "p90", "p99", "max")) + f"  (n={spread['count']})"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def summary(result: dict[str, Any]) -> str:
    cfg, d, sockets = result.get("config", {}), result["durable"], result["sockets"]
    rows = [
        ("verdict", "PASS" if result["ok"] else "FAIL: durable messages lost or out of order"),
        ("target", f"{cfg.get('url', '?')}  speed x{cfg.get('speed', '?')}  workers {cfg.get('workers', '?')}"),
        ("trace", f"{cfg.get('events', '?')} events, {cfg.get('rooms', '?')} rooms, {cfg.get('users', '?')} users"),
        ("played", f"{result['played_seconds']:.1f} s (wall {result.get('wall_seconds', 0):.1f} s)"),
        ("sockets", f"opened {sockets['opened']}, peak {sockets['peak']}, reconnects {sockets['reconnects']}"),
        ("connect failures", _counts(sockets["failed"])),
        ("closed by server", _counts(sockets["dropped_by_server"])),
        ("sent", f"{sum(result['sent'].values())} ({_counts(result['sent'])})"),
        ("acked / unacked", f"{result['acked']} / {result['unacked']}"),
        ("refused (errors)", _counts(result["refused"])),
        ("skipped", _counts(result["skipped"])),
        ("delivered", f"{result['deliveries']['durable']} durable "
                      f"({result['deliveries']['durable_per_second']:.0f}/s), {result['deliveries']['frames']} frames"),
        ("latency ms", _ms(result["latency_ms"])),
        ("ack latency ms", _ms(result["ack_latency_ms"])),
        ("lost", f"{d['lost']} (gaps {d['lost_in_gaps']}, tail {d['lost_at_tail']}) over {d['streams']} streams"),
        ("duplicated", str(d["duplicated"])),
        ("out of order", str(d["out_of_order"])),
        ("recovery", f"complete {result['recovery']['complete']}, incomplete "
                     f"{result['recovery']['incomplete']}; ms {_ms(result['recovery']['ms'])}"),
        ("tutor", f"asked {result['tutor']['asked']}, answered {result['tutor']['answered']}; "
                  f"ms {_ms(result['tutor']['answer_ms'])}"),
        ("REST retries", _counts(result.get("rest_retries", {}))),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


PLOT_SKIPPED = "plot skipped: matplotlib is not installed (pip install 'roomserver[loadtest]')"


def can_plot() -> bool:
    """Whether matplotlib can be imported (it is optional: the `[loadtest]` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(result: dict[str, Any], path: Path) -> bool:
    """Latency p50/p99/max per second, and stamped deliveries per second on a second axis.

    Returns False, writing nothing, when matplotlib is not installed."""
    if not can_plot():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        ax.plot(t, [r[key] for r in rows], label=label)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("delivery latency (ms)")
    ax.set_yscale("symlog", linthresh=10)
    ax.grid(True, alpha=0.3)
    rate = ax.twinx()
    rate.fill_between(t, [r["deliveries"] for r in rows], alpha=0.15, color="grey", step="mid")
    rate.set_ylabel("chat deliveries per second")
    ax.legend(loc="upper left")
    cfg = result.get("config", {})
    ax.set_title(f"roomserver replay: {cfg.get('users', '?')} users, {cfg.get('rooms', '?')} rooms, "
                 f"{'PASS' if result['ok'] else 'FAIL'}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write result.json, summary.txt and (with matplotlib) latency.png into `out_dir`;
    the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / RESULT, "plot": out_dir / PLOT, "summary": out_dir / SUMMARY}
    paths["json"].write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    paths["summary"].write_text(summary(result) + "\n")
    if not plot(result, paths["plot"]):
        del paths["plot"]
    return paths


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data
