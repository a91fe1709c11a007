"""The metrics object: private registries per app, samplers run before a render, the chain
reader's method labels, close-code labels bounded."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from roomserver.api.ws import close_label
from roomserver.chain.rpc import method_name
from roomserver.observe.metrics import Metrics, prepare_multiprocess_dir


def test_two_apps_never_share_a_value() -> None:
    a, b = Metrics(), Metrics()
    a.messages_delivered.inc(5)
    text = b.render().decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "roomserver_messages_delivered"]
    assert [s.value for s in family.samples if s.name.endswith("_total")] == [0.0]


def test_samplers_run_before_each_render() -> None:
    metrics = Metrics()
    metrics.samplers.append(lambda: metrics.db_pool_in_use.set(7))
    assert "roomserver_db_pool_in_use 7.0" in metrics.render().decode()


def test_rpc_method_labels() -> None:
    async def get_multiple_accounts() -> None: ...

    coro = get_multiple_accounts()
    assert method_name(coro) == "getMultipleAccounts"
    coro.close()
    assert method_name(object()) == "other"


def test_close_codes_are_a_bounded_label() -> None:
    assert close_label(4001) == "4001" and close_label(1000) == "1000"
    assert close_label(3999) == close_label(4999) == close_label(None) == "other"


def test_the_multiprocess_directory_is_emptied(tmp_path: Path) -> None:
    (tmp_path / "counter_12.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    assert prepare_multiprocess_dir(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_dashboard_reads_only_metrics_the_server_has() -> None:
    import json
    import re

    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"roomserver_[a-z_]+", e)}
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    families = list(Metrics().registry.collect())
    series = {f.name + end for f in families for end in suffixes[f.type]}
    assert used <= series, sorted(used - series)
    assert {f.name for f in families} == {
        u.removesuffix("_total").removesuffix("_bucket") for u in used}  # every metric has a panel
