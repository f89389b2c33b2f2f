"""deploy/: the alert rules and the Grafana dashboard only name metrics the exporter really exports.

promtool is not installed here (Debian ships it in `prometheus`): when it is on the PATH the rules
are also checked with `promtool check rules`. Otherwise the rules are loaded as YAML, and every
metric name in every expression is looked up in a real scrape of the collector (real Redis,
files on disk, every conditional metric present).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from catalog_core.settings import Settings
from schemas import BatchResult, BatchStatus
from worker import metrics
from worker.catalog_file import serialize_catalog
from worker.lock import catalog_lock
from worker.metrics_export import CatalogCollector
from tests.helpers import product

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus-rules.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
# Our metrics all start with one of these; anything else in an expression is PromQL (functions,
# keywords), a label or a value.
PREFIXES = ("catalog_", "celery_")
REQUIRED_ALERTS = {"CatalogQueueGrowing", "CatalogNoCommitWhileQueued", "CatalogBatchesRejected",
                   "CatalogRotationLate", "CatalogLockHeldPastExpiry"}


def metric_names(expression: str) -> set[str]:
    """The metric names an expression reads: quoted strings and label matchers taken out first."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    return {token for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if token.startswith(PREFIXES)}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


@pytest.fixture
def exported(settings: Settings) -> set[str]:
    """Every sample name of one scrape, with each metric that appears only sometimes made present."""
    client = redis.Redis.from_url(settings.redis_url)
    metrics.record_batch(client, settings.queue, BatchResult(batch_id="b", status=BatchStatus.APPLIED, created=1))
    metrics.record_commit(client, settings.queue, 1, 0.1, 0.01, time.time())
    metrics.record_rotation(client, settings.queue, time.time())
    path = settings.catalog_path
    path.parent.mkdir(parents=True)
    path.write_bytes(serialize_catalog([product("A")]))
    settings.backup_path.mkdir(parents=True)
    (settings.backup_path / "products_20250101_000000_000000.json").write_bytes(b"[]")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector(settings))
    with catalog_lock(client, path, settings.lock_expire, 5):
        text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_rules_cover_every_alert_the_operators_asked_for() -> None:
    alerts = {rule["alert"] for rule in rules()}
    assert REQUIRED_ALERTS <= alerts
    for rule in rules():
        assert rule["expr"].strip() and "summary" in rule["annotations"], rule["alert"]


def test_every_metric_the_rules_name_is_exported(exported: set[str]) -> None:
    named = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert named, "the name extraction found nothing: it is broken"
    assert named - exported == set()


def test_every_metric_the_dashboard_names_is_exported(exported: set[str]) -> None:
    named = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    assert len(named) >= 15
    assert named - exported == set()


def test_a_misspelled_metric_would_be_caught() -> None:
    assert metric_names('rate(catalog_batchs_total{outcome="rejected"}[5m]) > 0') == {"catalog_batchs_total"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
