"""The ``catalog`` command, run as a real process: exit codes, JSON output, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from catalog_core.settings import Settings
from tests.conftest import CliRunner
from tests.helpers import product, write_jsonl


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_help_explains_commands_and_exit_codes(run_cli: CliRunner) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("validate", "apply", "verify", "stats", "backups", "Exit codes"):
        assert word in result.stdout


def test_apply_creates_the_catalog_and_reports_json_lines(run_cli: CliRunner, tmp_path: Path, settings: Settings) -> None:
    batch = write_jsonl(tmp_path / "new.jsonl", [product("A"), product("B")])
    result = run_cli("apply", str(batch), "--json")
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert line["status"] == "applied" and line["created"] == 2
    assert set(line) >= {"batch_id", "status", "created", "updated", "unchanged", "errors", "backup"}
    assert settings.catalog_path.exists()


def test_apply_of_several_files_prints_one_line_per_batch(run_cli: CliRunner, tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "one.jsonl", [product("A")])
    second = write_jsonl(tmp_path / "two.jsonl", [{"product_id": "A", "category": "Cruise"}])
    third = write_jsonl(tmp_path / "three.jsonl", [{"product_id": "A", "category": "Cruise"}])
    lines = json_lines(run_cli("apply", str(first), str(second), str(third), "--json").stdout)
    assert [line["status"] for line in lines] == ["applied", "applied", "unchanged"]
    assert lines[1]["backup"] and lines[2]["backup"] is None


def test_a_rejected_batch_exits_1_and_names_file_line_product_and_field(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    batch = write_jsonl(tmp_path / "bad.jsonl", [product("A"), {"product_id": "B", "pricing": [{"tier_name": "x", "price_aed": -3}]}])
    result = run_cli("apply", str(batch))
    assert result.returncode == 1
    assert "bad.jsonl, line 2, record 2, product B, field pricing[0].price_aed" in result.stdout
    assert "nothing was written" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not settings.catalog_path.exists()


def test_json_errors_carry_index_product_field_and_line(run_cli: CliRunner, tmp_path: Path) -> None:
    batch = write_jsonl(tmp_path / "bad.jsonl", [{"product_id": "B", "prcing": []}])
    [line] = json_lines(run_cli("apply", str(batch), "--json").stdout)
    assert line["status"] == "rejected"
    assert line["errors"][0] | {"msg": ""} == {"index": 0, "product_id": "B", "loc": "prcing", "line": 1, "msg": ""}


def test_an_unparseable_file_exits_2_and_applies_no_file(run_cli: CliRunner, tmp_path: Path, settings: Settings) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [product("A")])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"product_id": "A"}\n{"product_id": \n')
    result = run_cli("apply", str(good), str(broken))
    assert result.returncode == 2
    assert "broken.jsonl, line 2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not settings.catalog_path.exists()


def test_a_missing_file_exits_2(run_cli: CliRunner, tmp_path: Path) -> None:
    result = run_cli("apply", str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2 and "absent.jsonl: no such file" in result.stderr


def test_an_unreachable_redis_exits_3_without_a_traceback(run_cli: CliRunner, tmp_path: Path) -> None:
    batch = write_jsonl(tmp_path / "new.jsonl", [product("A")])
    result = run_cli("apply", str(batch), "--redis-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 3
    assert "cannot reach Redis" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_catalog_exits_3_and_points_at_backups(run_cli: CliRunner, tmp_path: Path, settings: Settings) -> None:
    settings.catalog_path.parent.mkdir(parents=True)
    settings.catalog_path.write_text("[{")
    result = run_cli("apply", str(write_jsonl(tmp_path / "new.jsonl", [product("A")])))
    assert result.returncode == 3
    assert "catalog backups" in result.stderr
    assert settings.catalog_path.read_text() == "[{"


def test_validate_checks_patches_against_the_catalog_without_redis(run_cli: CliRunner, tmp_path: Path) -> None:
    assert run_cli("apply", str(write_jsonl(tmp_path / "seed.jsonl", [product("A")]))).returncode == 0
    patch = write_jsonl(tmp_path / "patch.jsonl", [{"product_id": "A", "category": "Cruise"}])
    orphan = write_jsonl(tmp_path / "orphan.jsonl", [{"product_id": "GHOST", "category": "Cruise"}])
    no_redis = {"CATALOG_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert run_cli("validate", str(patch), env=no_redis).returncode == 0
    result = run_cli("validate", str(patch), str(orphan), env=no_redis)
    assert result.returncode == 1
    assert "orphan.jsonl: invalid" in result.stdout and "GHOST" in result.stdout


def test_verify_passes_a_good_catalog_and_lists_problems_of_a_bad_one(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    run_cli("apply", str(write_jsonl(tmp_path / "seed.jsonl", [product("A")])))
    assert run_cli("verify").returncode == 0
    data = json.loads(settings.catalog_path.read_text())
    data[0]["pricing"][0]["price_aed"] = -1
    settings.catalog_path.write_text(json.dumps(data))
    result = run_cli("verify")
    assert result.returncode == 1 and "pricing[0].price_aed" in result.stderr


def test_stats_reports_counts_and_backups(run_cli: CliRunner, tmp_path: Path) -> None:
    run_cli("apply", str(write_jsonl(tmp_path / "a.jsonl", [product("A", category="Tour", active=False), product("B", category="Tour")])))
    run_cli("apply", str(write_jsonl(tmp_path / "b.jsonl", [{"product_id": "B", "destination_city": "Dubai"}])))
    [figures] = json_lines(run_cli("stats", "--json").stdout)
    assert (figures["products"], figures["active"], figures["inactive"]) == (2, 1, 1)
    assert figures["by_category"] == {"Tour": 2}
    assert figures["by_city"] == {"(none)": 1, "Dubai": 1}
    assert figures["backups"] == 1


def test_backups_list_rotate_and_restore_work_together(run_cli: CliRunner, tmp_path: Path, settings: Settings) -> None:
    run_cli("apply", str(write_jsonl(tmp_path / "a.jsonl", [product("A")])))
    run_cli("apply", str(write_jsonl(tmp_path / "b.jsonl", [product("B")])))
    [entry] = json_lines(run_cli("backups", "list", "--json").stdout)
    assert run_cli("backups", "restore", entry["name"]).returncode == 0
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A"]
    run_cli("apply", str(write_jsonl(tmp_path / "c.jsonl", [product("C")])))  # a third backup: the newest two stay
    rotated = run_cli("backups", "rotate", "--days", "0", "--dry-run")
    assert rotated.returncode == 0 and "would delete 1 backup(s)" in rotated.stdout


def test_restore_refuses_a_path_outside_the_backup_folder(run_cli: CliRunner) -> None:
    result = run_cli("backups", "restore", "../products.json")
    assert result.returncode == 2 and "not a path" in result.stderr


def test_batch_id_is_for_one_file_only(run_cli: CliRunner, tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [product("A")])
    result = run_cli("apply", str(a), str(a), "--batch-id", "x")
    assert result.returncode == 2 and "exactly one file" in result.stderr


def test_invalid_settings_are_a_clear_error(run_cli: CliRunner) -> None:
    result = run_cli("verify", env={"CATALOG_LOCK_EXPIRE": "soon"})
    assert result.returncode == 2 and "CATALOG_LOCK_EXPIRE" in result.stderr and "Traceback" not in result.stderr


def test_backup_commands_skip_and_report_names_that_are_not_backups(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    run_cli("apply", str(write_jsonl(tmp_path / "a.jsonl", [product("A")])))
    run_cli("apply", str(write_jsonl(tmp_path / "b.jsonl", [product("B")])))
    [real] = json_lines(run_cli("backups", "list", "--json").stdout)
    folder = settings.backup_path
    impossible = folder / "products_20261399_000000_000000.json"
    impossible.write_text("[]")
    shadow = tmp_path / "shadow"
    shadow.write_text("root:secret-hash:19000:0:99999:7:::\n")
    (folder / "products_20200101_000000_000000.json").symlink_to(shadow)
    other_catalog = tmp_path / "other.json"
    other_catalog.write_text(json.dumps([product("OTHER")]))
    (folder / "products_20200102_000000_000000.json").symlink_to(other_catalog)

    listed = run_cli("backups", "list", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert [line["name"] for line in json_lines(listed.stdout)] == [real["name"]]
    for name in ("products_20261399_000000_000000.json", "products_20200101_000000_000000.json"):
        assert name in listed.stderr

    rotated = run_cli("backups", "rotate", "--days", "0")
    assert rotated.returncode == 0 and "Traceback" not in rotated.stderr
    assert "products_20261399_000000_000000.json" in rotated.stderr
    assert impossible.exists() and shadow.exists() and other_catalog.exists()

    stats = run_cli("stats", "--json")
    assert stats.returncode == 0 and json_lines(stats.stdout)[0]["backups"] == 1, stats.stderr

    for name in ("products_20261399_000000_000000.json", "products_20200102_000000_000000.json"):
        restored = run_cli("backups", "restore", name)
        assert restored.returncode == 2 and "not a backup" in restored.stderr, restored.stderr
        assert "Traceback" not in restored.stderr
    assert [p["product_id"] for p in json.loads(settings.catalog_path.read_text())] == ["A", "B"]


def test_a_catalog_path_that_is_a_symlink_loop_is_a_clear_error(run_cli: CliRunner, tmp_path: Path) -> None:
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    batch = write_jsonl(tmp_path / "a.jsonl", [product("A")])
    for command in (["verify"], ["stats"], ["validate", str(batch)], ["apply", str(batch)], ["backups", "list"]):
        result = run_cli(*command, "--catalog", str(loop))
        assert result.returncode in (2, 3), (command, result.stderr)
        assert "Traceback" not in result.stderr and "loop.json" in result.stderr, (command, result.stderr)
        assert "symbolic link" in result.stderr, (command, result.stderr)


def test_status_of_a_batch_redis_has_no_result_for_comes_from_the_ledger_with_its_backup(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    # `catalog apply` leaves no result in Redis (nor does one that expired): the ledger knows.
    run_cli("apply", str(write_jsonl(tmp_path / "create.jsonl", [product("A")])))
    patch = write_jsonl(tmp_path / "patch.jsonl", [{"product_id": "A", "product_name": "Renamed"}])
    [applied] = json_lines(run_cli("apply", str(patch), "--json").stdout)
    assert applied["backup"] is not None
    shown = run_cli("status", applied["batch_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    [line] = json_lines(shown.stdout)
    # The ledger keeps the backup's name (what `catalog backups restore NAME` takes).
    assert line["status"] == "applied" and line["backup"] == Path(applied["backup"]).name and line["updated"] == 1
    told = run_cli("status", applied["batch_id"])
    assert told.returncode == 0 and "from the ledger of" in told.stderr and "Traceback" not in told.stderr
    unknown = run_cli("status", "never-submitted")
    assert unknown.returncode == 5 and "unknown" in unknown.stdout


def test_status_says_unknown_when_the_catalog_state_file_cannot_be_read(
    run_cli: CliRunner, tmp_path: Path, settings: Settings
) -> None:
    run_cli("apply", str(write_jsonl(tmp_path / "create.jsonl", [product("A")])))
    settings.catalog_path.with_name("products.json.state").write_bytes(b"{not json")
    shown = run_cli("status", "some-batch")
    assert shown.returncode == 5 and "unknown" in shown.stdout and "Traceback" not in shown.stderr
    assert "ledger was not read" in shown.stderr and "products.json.state" in shown.stderr
