"""What a user reads about bad settings: every broken rule at once, in CATALOG_* names, with a fix;
misspelled variables; commands that need only some settings; and `catalog config`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from catalog_core.errors import SettingsError
from catalog_core.settings import load_settings

FIELD_NAMES = re.compile(r"\b(lock_timeout|task_time_limit|visibility_timeout|retry_backoff_max)\b")
TIMING_VARIABLES = ("CATALOG_LOCK_TIMEOUT", "CATALOG_TASK_TIME_LIMIT", "CATALOG_VISIBILITY_TIMEOUT",
                    "CATALOG_RETRY_BACKOFF_MAX")
DEFAULTS = {"CATALOG_LOCK_TIMEOUT": 60.0, "CATALOG_TASK_TIME_LIMIT": 600, "CATALOG_VISIBILITY_TIMEOUT": 900,
            "CATALOG_RETRY_BACKOFF_MAX": 120}


def timing_rules_hold(values: dict[str, float]) -> bool:
    """The rules as the README states them, written here independently of catalog_core."""
    lock, limit = values["CATALOG_LOCK_TIMEOUT"], int(values["CATALOG_TASK_TIME_LIMIT"])
    visibility, backoff = values["CATALOG_VISIBILITY_TIMEOUT"], values["CATALOG_RETRY_BACKOFF_MAX"]
    soft = max(limit - max(5, limit // 10), 1)
    return lock < soft < limit < visibility and backoff < visibility


def error_for(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def suggested(message: str) -> dict[str, float]:
    _, found, proposal = message.partition("A combination that works:")
    assert found, message
    return {name: float(value) for name, value in re.findall(r"(CATALOG_[A-Z_]+)=([0-9.]+)", proposal)}


def test_one_message_names_every_broken_timing_rule_in_catalog_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_for(monkeypatch, CATALOG_VISIBILITY_TIMEOUT="60")
    # Both rules that a visibility timeout of 60 s breaks with the defaults, in one message.
    assert "CATALOG_TASK_TIME_LIMIT (600)" in message and "CATALOG_RETRY_BACKOFF_MAX (120)" in message
    assert "CATALOG_VISIBILITY_TIMEOUT (60)" in message
    assert not FIELD_NAMES.search(message), message


def test_the_message_states_the_rules_including_the_derived_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_for(monkeypatch, CATALOG_LOCK_TIMEOUT="580")
    assert "soft limit" in message and "CATALOG_TASK_TIME_LIMIT - max(5, CATALOG_TASK_TIME_LIMIT // 10) (at least 1)" in message
    assert "CATALOG_LOCK_TIMEOUT (580)" in message and "540" in message
    assert "CATALOG_RETRY_BACKOFF_MAX < CATALOG_VISIBILITY_TIMEOUT" in message


@pytest.mark.parametrize("variables", [
    {"CATALOG_VISIBILITY_TIMEOUT": "60"},
    {"CATALOG_VISIBILITY_TIMEOUT": "5"},
    {"CATALOG_LOCK_TIMEOUT": "700"},
    {"CATALOG_LOCK_TIMEOUT": "3", "CATALOG_TASK_TIME_LIMIT": "6"},
    {"CATALOG_TASK_TIME_LIMIT": "1200"},
    {"CATALOG_RETRY_BACKOFF_MAX": "1000"},
    {"CATALOG_TASK_TIME_LIMIT": "900", "CATALOG_VISIBILITY_TIMEOUT": "600"},
])
def test_the_suggested_combination_keeps_what_the_user_set_and_satisfies_every_rule(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    proposal = suggested(error_for(monkeypatch, **variables))
    assert set(proposal) == set(TIMING_VARIABLES)
    assert timing_rules_hold(proposal), proposal
    if len(variables) == 1:  # one value set: it is kept, the defaults move around it
        (name, value), = variables.items()
        assert proposal[name] == float(value)
    for name, value in proposal.items():  # and the proposal really loads
        monkeypatch.setenv(name, f"{value:g}")
    load_settings()


def test_when_the_values_set_contradict_each_other_one_of_them_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {"CATALOG_LOCK_TIMEOUT": "5", "CATALOG_TASK_TIME_LIMIT": "8", "CATALOG_VISIBILITY_TIMEOUT": "12",
                 "CATALOG_RETRY_BACKOFF_MAX": "4"}
    message = error_for(monkeypatch, **variables)
    assert "the soft limit (3, from CATALOG_TASK_TIME_LIMIT 8)" in message
    assert timing_rules_hold(suggested(message))


def test_a_bad_value_and_a_broken_timing_rule_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_for(monkeypatch, CATALOG_LOCK_EXPIRE="soon", CATALOG_VISIBILITY_TIMEOUT="60")
    assert "CATALOG_LOCK_EXPIRE" in message and "CATALOG_TASK_TIME_LIMIT (600)" in message


def test_settings_without_the_celery_timing_check_load_despite_broken_timing_rules() -> None:
    settings = load_settings(visibility_timeout=60, check_timing=False)
    assert settings.visibility_timeout == 60
    with pytest.raises(SettingsError):
        load_settings(visibility_timeout=60)


# --- the command line -----------------------------------------------------------------


def run_catalog(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # os.environ holds no CATALOG_* here (tests/conftest.py): each test gives exactly its own.
    return subprocess.run([sys.executable, "-m", "catalog_cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200", **env})


@pytest.fixture
def catalog_env(tmp_path: Path) -> dict[str, str]:
    catalog = tmp_path / "products.json"
    catalog.write_text("[]\n")
    (tmp_path / "batch.jsonl").write_text("")
    return {"CATALOG_PATH": str(catalog), "CATALOG_REDIS_URL": "redis://127.0.0.1:1/0"}


@pytest.mark.parametrize("command", [["stats"], ["verify"], ["backups", "list"], ["validate", "{tmp}/batch.jsonl"]])
def test_commands_that_only_read_files_run_when_the_celery_timing_rules_are_broken(
        catalog_env: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    result = run_catalog(*(part.format(tmp=tmp_path) for part in command),
                         env={**catalog_env, "CATALOG_VISIBILITY_TIMEOUT": "60"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["status", "batch-x"], ["enqueue", "{tmp}/batch.jsonl"],
                                     ["apply", "{tmp}/batch.jsonl"]])
def test_commands_that_use_the_celery_limits_refuse_broken_timing_rules_with_every_rule(
        catalog_env: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    result = run_catalog(*(part.format(tmp=tmp_path) for part in command),
                         env={**catalog_env, "CATALOG_VISIBILITY_TIMEOUT": "60"})
    assert result.returncode == 2, result.stderr
    assert "CATALOG_TASK_TIME_LIMIT (600)" in result.stderr and "CATALOG_RETRY_BACKOFF_MAX (120)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelled_variable_is_reported_with_the_nearest_known_name(catalog_env: dict[str, str]) -> None:
    result = run_catalog("stats", env={**catalog_env, "CATALOG_VISIBILTY_TIMEOUT": "60", "CATALOG_SEED_DIR": "/x"})
    assert result.returncode == 0, result.stderr
    assert "CATALOG_VISIBILTY_TIMEOUT" in result.stderr and "did you mean CATALOG_VISIBILITY_TIMEOUT" in result.stderr
    assert "CATALOG_SEED_DIR" not in result.stderr  # legitimately CATALOG_, not a setting


def test_config_shows_each_setting_with_its_source_and_the_derived_limits_without_passwords(
        catalog_env: dict[str, str], tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("file-s3cret\n")
    env = {**catalog_env, "CATALOG_REDIS_URL": "redis://:url-s3cret@h:1/0", "CATALOG_RESULT_URL": "redis://h:1/3",
           "CATALOG_TASK_TIME_LIMIT": "300", "CATALOG_VISIBILTY_TIMEOUT": "60"}
    text = run_catalog("config", env=env)
    assert text.returncode == 0, text.stderr
    assert re.search(r"CATALOG_TASK_TIME_LIMIT\s+300\s+env", text.stdout), text.stdout
    assert re.search(r"CATALOG_QUEUE\s+catalog-ingest\s+default", text.stdout), text.stdout
    assert re.search(r"soft time limit\s+270", text.stdout), text.stdout
    assert "url-s3cret" not in text.stdout + text.stderr and "redis://:**@h:1/0" in text.stdout
    assert "did you mean CATALOG_VISIBILITY_TIMEOUT" in text.stdout + text.stderr

    as_json = run_catalog("config", "--json", env={**env, "CATALOG_REDIS_URL": "redis://h:1/0",
                                                   "CATALOG_REDIS_PASSWORD_FILE": str(secret)})
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["settings"]["CATALOG_TASK_TIME_LIMIT"] == {"value": 300, "source": "env"}
    assert report["settings"]["CATALOG_QUEUE"] == {"value": "catalog-ingest", "source": "default"}
    assert report["settings"]["CATALOG_REDIS_URL"]["source"] == "env, password from CATALOG_REDIS_PASSWORD_FILE"
    assert report["derived"]["soft_time_limit"] == 270
    assert report["derived"]["result_backend"] == "redis://:**@h:1/3"
    assert report["unknown"] == [{"name": "CATALOG_VISIBILTY_TIMEOUT", "did_you_mean": "CATALOG_VISIBILITY_TIMEOUT"}]
    assert "file-s3cret" not in as_json.stdout + as_json.stderr


def test_config_shows_the_settings_and_every_broken_rule_and_exits_2(catalog_env: dict[str, str]) -> None:
    result = run_catalog("config", env={**catalog_env, "CATALOG_VISIBILITY_TIMEOUT": "60"})
    assert result.returncode == 2
    assert re.search(r"CATALOG_VISIBILITY_TIMEOUT\s+60\s+env", result.stdout), result.stdout
    assert "CATALOG_TASK_TIME_LIMIT (600)" in result.stderr and "A combination that works" in result.stderr


def test_config_help_explains_sources_and_rules() -> None:
    result = run_catalog("config", "--help", env={})
    assert result.returncode == 0, result.stderr
    for words in ("default", "env", "password", "soft", "CATALOG_VISIBILITY_TIMEOUT", "--json"):
        assert words in result.stdout, words


def test_the_readme_states_every_timing_rule_catalog_config_the_warning_and_the_exit_code() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    for words in ("CATALOG_LOCK_TIMEOUT < soft < CATALOG_TASK_TIME_LIMIT < CATALOG_VISIBILITY_TIMEOUT",
                  "soft = CATALOG_TASK_TIME_LIMIT - max(5, CATALOG_TASK_TIME_LIMIT // 10)",
                  "CATALOG_RETRY_BACKOFF_MAX < CATALOG_VISIBILITY_TIMEOUT", "`catalog config`",
                  "did you mean CATALOG_VISIBILITY_TIMEOUT?", "exit with code 2"):
        assert words in section, words
