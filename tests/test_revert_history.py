"""`catalog history`, `catalog revert` and `catalog watch` through the real CLI, on the seed catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import product, write_jsonl
from worker.catalog_file import read_catalog
from worker.revert import plan_revert
from schemas.events import ChangeEvent

def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


MUSEUM, FRAME, GREEN = "Dubai_MuseumOfTheFuture", "Dubai_DubaiFrame", "Dubai_GreenPlanet"


def price(value: float) -> list[dict[str, Any]]:
    return [{"tier_name": "Adult", "price_aed": value, "currency": "AED"}]


def aed(product: dict[str, Any]) -> list[float]:
    return [tier["price_aed"] for tier in product["pricing"]]


def by_id(settings: Settings) -> dict[str, dict[str, Any]]:
    return {p["product_id"]: p for p in read_catalog(settings.catalog_path)}


@pytest.fixture
def seeded(settings: Settings, seed_dir: Path) -> dict[str, dict[str, Any]]:
    settings.catalog_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(seed_dir / "products.json", settings.catalog_path)
    return by_id(settings)


def apply(run_cli: CliRunner, tmp_path: Path, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    batch = write_jsonl(tmp_path / f"{name}.jsonl", records)
    done = run_cli("apply", str(batch), "--json", "--batch-id", name)
    assert done.returncode == 0, done.stdout + done.stderr
    return json_lines(done.stdout)[-1]


def test_reverting_the_price_feed_after_two_later_feeds_keeps_what_they_wrote(
    settings: Settings, seeded: dict[str, dict[str, Any]], run_cli: CliRunner, tmp_path: Path
) -> None:
    apply(run_cli, tmp_path, "price-feed", [{"product_id": MUSEUM, "pricing": price(179.0)},
                                            {"product_id": FRAME, "pricing": price(60.0),
                                             "description_short": "Now with the Sky Bridge."}])
    apply(run_cli, tmp_path, "later-feed-1", [{"product_id": MUSEUM, "pricing": price(189.0)}])  # same product
    apply(run_cli, tmp_path, "later-feed-2", [{"product_id": GREEN, "category": "Nature"}])
    dry = run_cli("revert", "price-feed", "--dry-run")
    assert dry.returncode == 0 and f"{MUSEUM}.pricing: kept, written since by batch later-feed-1" in dry.stdout, \
        dry.stdout + dry.stderr
    before = by_id(settings)
    assert by_id(settings) == before  # a dry run writes nothing

    done = run_cli("revert", "price-feed", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_lines(done.stdout)[-1]["status"] == "applied"
    after = by_id(settings)
    assert aed(after[MUSEUM]) == [189.0]  # written since by later-feed-1: kept
    assert after[FRAME]["pricing"] == seeded[FRAME]["pricing"]  # back to the seed's
    assert after[FRAME].get("description_short") == seeded[FRAME].get("description_short")
    assert after[GREEN]["category"] == "Nature"  # never the price feed's
    assert {k: v for k, v in after.items() if k not in (MUSEUM, GREEN)} == \
        {k: v for k, v in seeded.items() if k not in (MUSEUM, GREEN)}

    again = run_cli("revert", "price-feed", "--json")
    assert again.returncode == 0 and json_lines(again.stdout)[-1]["status"] == "duplicate"

    history = run_cli("history", FRAME, "--field", "pricing", "--json")
    lines = json_lines(history.stdout)
    assert [line["batch_id"] for line in lines] == ["price-feed", "revert-of-price-feed"]
    assert lines[0]["fields"][0]["old"] == seeded[FRAME]["pricing"]
    assert [tier["price_aed"] for tier in lines[0]["fields"][0]["new"]] == [60.0]
    assert lines[1]["fields"][0]["new"] == seeded[FRAME]["pricing"]
    readable = run_cli("history", MUSEUM)
    assert "price-feed" in readable.stdout and "later-feed-1" in readable.stdout and "CATALOG_EVENTS_MAXLEN" in readable.stdout


def test_a_revert_can_itself_be_reverted(settings: Settings, seeded: dict[str, dict[str, Any]], run_cli: CliRunner,
                                        tmp_path: Path) -> None:
    apply(run_cli, tmp_path, "feed", [{"product_id": FRAME, "pricing": price(60.0)}])
    assert run_cli("revert", "feed").returncode == 0
    assert by_id(settings)[FRAME]["pricing"] == seeded[FRAME]["pricing"]
    assert run_cli("revert", "revert-of-feed").returncode == 0
    assert aed(by_id(settings)[FRAME]) == [60.0]


def test_reverting_a_batch_that_created_a_product_deactivates_it(
    settings: Settings, seeded: dict[str, dict[str, Any]], run_cli: CliRunner, tmp_path: Path
) -> None:
    records = [product("Concierge_Yacht"), product("Concierge_Photographer")]
    created = apply(run_cli, tmp_path, "concierge", records)
    assert created["created"] == len(records)
    done = run_cli("revert", "concierge")
    assert done.returncode == 0, done.stdout + done.stderr
    after = by_id(settings)
    assert all(after[r["product_id"]]["active"] is False for r in records)


def test_reverting_a_batch_the_stream_does_not_hold_says_why_and_exits_5(settings: Settings, run_cli: CliRunner) -> None:
    done = run_cli("revert", "never-applied")
    assert done.returncode == 5 and "not in the change stream" in done.stderr and "Traceback" not in done.stderr


def test_watch_prints_each_event_from_the_start_as_json(settings: Settings, seeded: dict[str, dict[str, Any]],
                                                       run_cli: CliRunner, tmp_path: Path) -> None:
    apply(run_cli, tmp_path, "one", [{"product_id": FRAME, "pricing": price(61.0)}])
    apply(run_cli, tmp_path, "two", [{"product_id": GREEN, "category": "Nature"}])
    done = run_cli("watch", "--since", "0", "--count", "2", "--json", timeout=30)
    events = [ChangeEvent.model_validate(line) for line in json_lines(done.stdout)]
    assert [e.batch_id for e in events] == ["one", "two"]
    follow_on = run_cli("watch", "--since", json_lines(done.stdout)[0]["stream_id"], "--count", "1", "--json")
    assert json_lines(follow_on.stdout)[0]["batch_id"] == "two"
    idle = run_cli("watch", "--timeout", "1")
    assert idle.returncode == 0 and idle.stdout == ""


def test_a_revert_plan_keeps_fields_a_later_sequence_wrote_and_restores_the_rest() -> None:
    event = ChangeEvent.model_validate({
        "event_id": "7-100", "fence": 7, "batch_id": "feed", "sequence": 100, "source": "s", "committed_at": 1.0,
        "backup": None, "changes": [
            {"product_id": "A", "fields": [{"field": "pricing", "old": [1], "new": [2]},
                                           {"field": "category", "old": None, "old_absent": True, "new": "x"}]},
            {"product_id": "N", "created": True, "fields": [{"field": "product_id", "new": "N", "old_absent": True}]},
        ]})
    plan = plan_revert(event, {"A": {"pricing": 101, "category": 100}, "N": {"active": 100}},
                       {"later": {"sequence": 101}})
    assert plan.records == [{"product_id": "A", "category": None}, {"product_id": "N", "active": False}]
    assert [(k.product_id, k.field, k.by_batch) for k in plan.kept] == [("A", "pricing", "later")]
    assert orjson.loads(orjson.dumps(plan.records))  # plain JSON


def test_reverting_with_delete_created_removes_what_the_batch_created_and_its_revert_puts_it_back(
    settings: Settings, seeded: dict[str, dict[str, Any]], run_cli: CliRunner, tmp_path: Path
) -> None:
    apply(run_cli, tmp_path, "new-tours", [product("Tour_A"), product("Tour_B"),
                                           {"product_id": FRAME, "category": "Landmark"}])
    apply(run_cli, tmp_path, "later", [{"product_id": "Tour_B", "category": "kept by a later batch"}])
    dry = run_cli("revert", "new-tours", "--delete-created", "--dry-run")
    assert "Tour_A: created by the batch: removed" in dry.stdout and "Tour_B.category: kept" in dry.stdout, dry.stdout
    done = run_cli("revert", "new-tours", "--delete-created", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json_lines(done.stdout)[-1]["deleted"] == 1
    after = by_id(settings)
    assert "Tour_A" not in after and after["Tour_B"]["active"] is False  # a later batch wrote to it: kept, inactive
    assert after[FRAME].get("category") == seeded[FRAME].get("category")
    back = run_cli("revert", "revert-of-new-tours")
    assert back.returncode == 0, back.stdout + back.stderr
    assert by_id(settings)["Tour_A"]["product_name"] == "Product Tour_A"
    history = json_lines(run_cli("history", "Tour_A", "--json").stdout)
    assert [line["batch_id"] for line in history] == ["new-tours", "revert-of-new-tours", "revert-of-revert-of-new-tours"]
