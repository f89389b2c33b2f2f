"""``catalog apply --dry-run`` and ``catalog diff``, run as the real command against a real Redis."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from catalog_core.sequence import sequence_key
from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import cli_env, product, write_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]

PRICE_PATCH = {"product_id": "A", "pricing": [{"tier_name": "Adult", "price_aed": 120.0, "currency": "AED"}]}
NEW_PRODUCT = {"product_id": "N", "product_name": "New one", "pricing": [], "inclusions": []}


def apply(run_cli: CliRunner, path: Path, records: list[Any]) -> None:
    result = run_cli("apply", str(write_jsonl(path, records)))
    assert result.returncode == 0, result.stdout + result.stderr


def everything_on_disk(settings: Settings) -> dict[str, bytes]:
    """Every file of the catalog's folder (catalog, state file, lock files) and of the backup folder."""
    files = {}
    for root in (settings.catalog_path.parent, settings.backup_path):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[str(path)] = path.read_bytes()
    return files


def lasting_redis_keys(settings: Settings) -> dict[bytes, bytes | None]:
    """Every Redis key without an expiry (the sequence counter, the fence...), with its value.

    Keys with a time to live (python-redis-lock's signal keys) may expire while a test runs.
    """
    client = redis.Redis.from_url(settings.redis_url)
    return {key: client.dump(key) for key in sorted(client.keys("*")) if client.ttl(key) == -1}


def all_redis_keys(settings: Settings) -> set[bytes]:
    return set(redis.Redis.from_url(settings.redis_url).keys("*"))


@pytest.fixture
def two_products(run_cli: CliRunner, tmp_path: Path) -> None:
    """A catalog of A and B, written by a real apply: a state file, a sequence taken, a backup."""
    apply(run_cli, tmp_path / "first.jsonl", [product("A")])
    apply(run_cli, tmp_path / "second.jsonl", [product("B")])


@pytest.mark.usefixtures("two_products")
def test_a_dry_run_shows_each_changed_value_and_writes_nothing(run_cli: CliRunner, tmp_path: Path,
                                                                settings: Settings) -> None:
    feed = write_jsonl(tmp_path / "feed.jsonl", [PRICE_PATCH, NEW_PRODUCT, {"product_id": "B", "active": True}])
    disk, lasting, keys = everything_on_disk(settings), lasting_redis_keys(settings), all_redis_keys(settings)
    taken = redis.Redis.from_url(settings.redis_url).get(sequence_key(settings.queue))
    assert taken is not None and any("backups" in name for name in disk)

    result = run_cli("apply", "--dry-run", str(feed))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[1:] == [
        "~ A",
        "    pricing[0].price_aed: 100.0 -> 120.0",
        "+ N (created)",
        "1 created, 1 changed, 1 unchanged",
    ]
    assert "dry run: nothing written" in result.stdout.splitlines()[0]
    assert everything_on_disk(settings) == disk
    assert lasting_redis_keys(settings) == lasting and all_redis_keys(settings) <= keys
    assert redis.Redis.from_url(settings.redis_url).get(sequence_key(settings.queue)) == taken


@pytest.mark.usefixtures("two_products")
def test_diff_of_a_file_is_the_dry_run_and_needs_no_redis(run_cli: CliRunner, tmp_path: Path) -> None:
    feed = write_jsonl(tmp_path / "feed.jsonl", [PRICE_PATCH])
    unreachable = {"CATALOG_REDIS_URL": "redis://127.0.0.1:1/0"}
    dry_run = run_cli("apply", "--dry-run", str(feed), env=unreachable)
    diffed = run_cli("diff", str(feed), env=unreachable)
    assert dry_run.returncode == diffed.returncode == 0, dry_run.stderr + diffed.stderr
    assert dry_run.stdout == diffed.stdout and "pricing[0].price_aed: 100.0 -> 120.0" in diffed.stdout


@pytest.mark.usefixtures("two_products")
def test_several_files_are_previewed_in_turn_as_apply_would_apply_them(run_cli: CliRunner, tmp_path: Path) -> None:
    create = write_jsonl(tmp_path / "create.jsonl", [NEW_PRODUCT])
    patch = write_jsonl(tmp_path / "patch.jsonl", [{"product_id": "N", "category": "Tour"}])
    result = run_cli("diff", str(create), str(patch), "--json")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (first["outcome"], first["created"], second["outcome"], second["changed"]) == ("changes", 1, "changes", 1)
    assert second["products"] == [{"product_id": "N", "change": "changed", "fields": [
        {"field": "category", "old": None, "new": "Tour", "old_absent": False, "new_absent": False}]}]


@pytest.mark.usefixtures("two_products")
def test_a_batch_that_would_be_rejected_exits_1_with_its_problems_and_changes_nothing(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    feed = write_jsonl(tmp_path / "bad.jsonl", [PRICE_PATCH, {"product_id": "B", "pricing": [{"price_aed": -3}]}])
    disk = everything_on_disk(settings)
    result = run_cli("apply", "--dry-run", str(feed))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "would be rejected" in result.stdout and "nothing would change" in result.stdout
    assert "bad.jsonl, line 2, record 2, product B, field pricing[0].price_aed" in result.stdout
    assert "~ A" not in result.stdout
    assert everything_on_disk(settings) == disk

    [document] = [json.loads(line) for line in run_cli("diff", str(feed), "--json").stdout.splitlines()]
    assert document["outcome"] == "rejected" and document["products"] == []
    assert {(error["index"], error["line"], error["product_id"]) for error in document["errors"]} >= {(1, 2, "B")}


def test_bad_input_exits_2_with_a_clear_message(run_cli: CliRunner, tmp_path: Path) -> None:
    missing = run_cli("diff", "nothing-here.jsonl")
    assert missing.returncode == 2 and "no such batch file, and no backup of that name" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"product_id": \n')
    assert run_cli("apply", "--dry-run", str(broken)).returncode == 2
    feed = write_jsonl(tmp_path / "feed.jsonl", [PRICE_PATCH])
    with_id = run_cli("apply", "--dry-run", "--batch-id", "x", str(feed))
    assert with_id.returncode == 2 and "--batch-id" in with_id.stderr
    for result in (missing, with_id):
        assert "Traceback" not in result.stdout + result.stderr


def backups_oldest_first(run_cli: CliRunner) -> list[str]:
    listed = run_cli("backups", "list", "--json")
    return [json.loads(line)["name"] for line in listed.stdout.splitlines()]


def gzip_in_place(path: Path) -> str:
    """Compress a backup as rotation does: NAME.gz holds the bytes, NAME is gone."""
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return path.name + ".gz"


@pytest.mark.usefixtures("two_products")
def test_diff_of_two_backups_one_gzipped_and_of_a_backup_with_the_current_catalog(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    apply(run_cli, tmp_path / "third.jsonl", [PRICE_PATCH, NEW_PRODUCT])
    # Backups now: [A] (before B), [A, B] (before the third batch). Current: [A', B, N].
    only_a, a_and_b = backups_oldest_first(run_cli)
    only_a_gz = gzip_in_place(settings.backup_path / only_a)

    result = run_cli("diff", only_a_gz, a_and_b)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{only_a_gz} -> {a_and_b}", "+ B (created)",
                                          "1 created, 0 changed, 1 unchanged, 0 removed"]

    reverse = run_cli("diff", a_and_b, only_a, "--json")  # the plain name still finds the gzipped backup
    [document] = [json.loads(line) for line in reverse.stdout.splitlines()]
    assert (document["kind"], document["before"], document["after"]) == ("versions", a_and_b, only_a_gz)
    assert (document["created"], document["changed"], document["unchanged"], document["removed"]) == (0, 0, 1, 1)
    [removed] = document["products"]
    assert removed["product_id"] == "B" and removed["change"] == "removed"
    assert removed["fields"][0] == {"field": "product_id", "old": "B", "new": None, "old_absent": False,
                                    "new_absent": True}

    with_current = run_cli("diff", a_and_b)
    assert with_current.stdout.splitlines() == [
        f"{a_and_b} -> {settings.catalog_path} (current)",
        "~ A", "    pricing[0].price_aed: 100.0 -> 120.0", "+ N (created)",
        "1 created, 1 changed, 1 unchanged, 0 removed"]


@pytest.mark.usefixtures("two_products")
def test_mixing_files_and_backups_or_naming_three_backups_is_refused(run_cli: CliRunner, tmp_path: Path) -> None:
    apply(run_cli, tmp_path / "third.jsonl", [PRICE_PATCH])
    names = backups_oldest_first(run_cli)
    feed = write_jsonl(tmp_path / "feed.jsonl", [PRICE_PATCH])
    mixed = run_cli("diff", names[0], str(feed))
    assert mixed.returncode == 2 and "not both" in mixed.stderr
    three = run_cli("diff", names[0], names[1], names[0])
    assert three.returncode == 2 and "got 3 names" in three.stderr


def test_a_backup_that_is_not_a_catalog_is_bad_input_named_as_a_backup(run_cli: CliRunner, tmp_path: Path,
                                                                       settings: Settings) -> None:
    apply(run_cli, tmp_path / "first.jsonl", [product("A")])
    apply(run_cli, tmp_path / "second.jsonl", [product("B")])
    [backup] = backups_oldest_first(run_cli)
    (settings.backup_path / backup).write_text("[1", encoding="utf-8")
    result = run_cli("diff", backup)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{backup} cannot be read as a backup: not valid JSON" in result.stderr
    assert "restore" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("depth", [300, 1000])
def test_a_backup_value_nested_deeper_than_json_output_allows_is_a_clear_error_not_a_traceback(
    run_cli: CliRunner, tmp_path: Path, settings: Settings, depth: int
) -> None:
    apply(run_cli, tmp_path / "first.jsonl", [product("A")])
    apply(run_cli, tmp_path / "second.jsonl", [product("B")])
    [backup] = backups_oldest_first(run_cli)
    deep = "[" * depth + "]" * depth  # the catalog parser reads up to 1024 levels; orjson writes 255
    (settings.backup_path / backup).write_text(f'[{{"product_id": "A", "category": {deep}}}]', encoding="utf-8")
    shown = run_cli("diff", backup)
    assert shown.returncode == 0 and "    category: [[[[" in shown.stdout, shown.stdout + shown.stderr
    as_json = run_cli("diff", backup, "--json")
    assert as_json.returncode == 2 and "nested too deeply" in as_json.stderr, as_json.stdout + as_json.stderr
    assert "Traceback" not in shown.stderr + as_json.stderr


def test_hostile_strings_from_a_backup_and_a_file_name_are_shown_escaped(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    apply(run_cli, tmp_path / "first.jsonl", [product("A")])
    apply(run_cli, tmp_path / "second.jsonl", [product("B")])
    [backup] = backups_oldest_first(run_cli)
    # A backup is not validated on the way in: whatever it holds must reach the terminal inert.
    hostile = [{**product("A"), "category": "\x1b[2J\u202eevil"}, {**product("X\x1b]0;owned\x07"), "active": True}]
    (settings.backup_path / backup).write_text(json.dumps(hostile), encoding="utf-8")
    result = run_cli("diff", backup)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\x07" not in result.stdout
    assert '    category: "\\u001b[2J\\u202eevil" -> null' in result.stdout  # JSON escapes the ESC, we the bidi
    assert "- X\\x1b]0;owned\\x07 (removed)" in result.stdout

    named = tmp_path / "feed\x1b[31m.jsonl"
    write_jsonl(named, [PRICE_PATCH])
    shown = run_cli("diff", str(named))
    assert "\x1b" not in shown.stdout and "feed\\x1b[31m.jsonl" in shown.stdout


@pytest.mark.usefixtures("two_products")
def test_the_json_document_has_the_documented_keys(run_cli: CliRunner, tmp_path: Path, settings: Settings) -> None:
    feed = write_jsonl(tmp_path / "feed.jsonl", [PRICE_PATCH, NEW_PRODUCT])
    [document] = [json.loads(line) for line in run_cli("diff", str(feed), "--json").stdout.splitlines()]
    assert document == document | {"kind": "batch", "before": str(settings.catalog_path), "after": str(feed),
                                   "outcome": "changes", "created": 1, "changed": 1, "unchanged": 0, "removed": 0,
                                   "order_changed": False, "errors": []}
    assert set(document) == set(documented_example()) == {
        "kind", "before", "after", "outcome", "created", "changed", "unchanged", "removed", "order_changed",
        "products", "errors"}
    assert set(documented_example()["products"][0]) == set(document["products"][0])
    changed, created = document["products"]
    assert changed["change"] == "changed" and [f["field"] for f in changed["fields"]] == ["pricing"]
    assert changed["fields"][0]["old"][0]["price_aed"] == 100.0 and changed["fields"][0]["new"][0]["price_aed"] == 120.0
    assert created["change"] == "created" and created["fields"][1] == {
        "field": "product_name", "old": None, "new": "New one", "old_absent": True, "new_absent": False}


def documented_example() -> dict[str, Any]:
    """The example document of docs/message-format.md, "Previews and diffs"."""
    text = (REPO_ROOT / "docs" / "message-format.md").read_text(encoding="utf-8")
    section = text[text.index("## Previews and diffs"):]
    block = section[section.index("```json\n") + 8: section.index("\n```", section.index("```json"))]
    return json.loads(block)


def test_help_texts_teach_with_an_example(run_cli: CliRunner) -> None:
    diff_help = run_cli("diff", "--help")
    assert diff_help.returncode == 0 and "catalog diff feed.jsonl" in diff_help.stdout
    assert "BACKUP [BACKUP]" in diff_help.stdout
    apply_help = run_cli("apply", "--help")
    assert "--dry-run" in apply_help.stdout and "catalog apply --dry-run feed.jsonl" in apply_help.stdout


def test_a_price_feed_against_the_seed_catalog(run_cli: CliRunner, tmp_path: Path, settings: Settings,
                                               seed_dir: Path) -> None:
    seed = json.loads((seed_dir / "products.json").read_text(encoding="utf-8"))
    priced = [p for p in seed if p.get("pricing")][:3]
    feed = [{"product_id": p["product_id"], "pricing": [{**tier, "price_aed": tier["price_aed"] + 10}
                                                         for tier in p["pricing"]]} for p in priced]
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_bytes((seed_dir / "products.json").read_bytes())
    before = settings.catalog_path.read_bytes()

    result = run_cli("apply", "--dry-run", str(write_jsonl(tmp_path / "prices.jsonl", feed)))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for p in priced:
        at = lines.index(f"~ {p['product_id']}")
        for index, tier in enumerate(p["pricing"]):
            assert f"    pricing[{index}].price_aed: {tier['price_aed']} -> {tier['price_aed'] + 10}" in lines[at:]
    assert lines[-1] == f"0 created, {len(priced)} changed, 0 unchanged"
    assert settings.catalog_path.read_bytes() == before


def readme_preview_commands() -> list[str]:
    """The bash block of the README's "Previews and diffs", one command a line (test_readme skips it)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Previews and diffs"):]
    block = section[section.index("```bash\n") + 8: section.index("\n```", section.index("```bash"))]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_preview_commands_run_as_written_on_the_demo_catalog(run_cli: CliRunner, settings: Settings) -> None:
    assert run_cli("apply", str(REPO_ROOT / "examples" / "uae_attractions.jsonl")).returncode == 0
    commands = readme_preview_commands()
    assert commands and all(command.startswith("catalog ") for command in commands)
    env = cli_env(settings, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        assert "Demo_DubaiFrame_Entry" in result.stdout and "Traceback" not in result.stderr
