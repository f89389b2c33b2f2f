"""catalog_core.settings: one settings object from CATALOG_* variables, checked as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog_core.errors import SettingsError
from catalog_core.settings import Settings, load_settings


def test_defaults_match_the_documentation() -> None:
    settings = load_settings()
    assert settings.path == Path("data/products.json")
    assert settings.redis_url == "redis://localhost:6379/0"
    assert (settings.backup_retention_days, settings.lock_expire, settings.lock_timeout) == (7, 30, 60)
    assert settings.max_batch_items == 5000


def test_environment_variables_with_the_catalog_prefix_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CATALOG_PATH", str(tmp_path / "c.json"))
    monkeypatch.setenv("CATALOG_LOCK_EXPIRE", "12")
    settings = load_settings()
    assert settings.catalog_path == tmp_path / "c.json"
    assert settings.lock_expire == 12


def test_explicit_options_win_over_the_environment_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_REDIS_URL", "redis://env:1/0")
    assert load_settings(redis_url="redis://option:2/0").redis_url == "redis://option:2/0"
    assert load_settings(redis_url=None).redis_url == "redis://env:1/0"


def test_backups_default_to_a_folder_beside_the_catalog(tmp_path: Path) -> None:
    settings = load_settings(path=tmp_path / "x" / "products.json")
    assert settings.backup_path == tmp_path / "x" / "backups"
    assert load_settings(path=tmp_path / "p.json", backup_dir=tmp_path / "b").backup_path == tmp_path / "b"


def test_an_invalid_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="CATALOG_LOCK_EXPIRE"):
        load_settings(lock_expire="soon")


def test_limits_that_would_let_a_batch_run_past_its_visibility_timeout_are_refused() -> None:
    with pytest.raises(SettingsError, match=r"CATALOG_TASK_TIME_LIMIT \(900\) must be less than CATALOG_VISIBILITY_TIMEOUT"):
        load_settings(task_time_limit=900, visibility_timeout=600)
    with pytest.raises(SettingsError, match=r"CATALOG_LOCK_TIMEOUT \(700\) must be less than the soft limit"):
        load_settings(lock_timeout=700)


def test_a_soft_time_limit_that_would_stop_a_batch_still_waiting_for_the_lock_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"the soft limit \(3, from CATALOG_TASK_TIME_LIMIT 8\)"):
        load_settings(lock_timeout=5, task_time_limit=8, visibility_timeout=12, retry_backoff_max=4)
    settings = load_settings(lock_timeout=5, task_time_limit=11, visibility_timeout=14, retry_backoff_max=4)
    assert settings.lock_timeout < settings.soft_time_limit < settings.task_time_limit


def test_the_result_backend_defaults_to_the_redis_url() -> None:
    assert load_settings(redis_url="redis://a:1/0").result_backend == "redis://a:1/0"
    assert load_settings(redis_url="redis://a:1/0", result_url="redis://b:2/1").result_backend == "redis://b:2/1"


def test_to_env_rebuilds_every_setting_in_a_child_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Every field set to a value other than its default, so that a forgotten one shows.
    changed = {
        "path": tmp_path / "c" / "products.json", "backup_dir": tmp_path / "b", "redis_url": "redis://:pw@h:1/2",
        "redis_password_file": tmp_path / "redis_password",
        "backup_retention_days": 1.5, "lock_expire": 7, "lock_timeout": 8.5, "max_batch_items": 9,
        "max_batch_bytes": 2048, "max_file_bytes": 4096, "ledger_days": 2.5, "ledger_max_ids": 11, "result_url": "redis://:pw@h:1/3",
        "queue": "q-test", "visibility_timeout": 99, "task_time_limit": 50, "restore_interval": 3,
        "max_retries": 2, "retry_backoff_max": 9, "result_expires": 61, "rejected_keep": 5, "rotate_every": 7.5,
        "worker_threads": 3, "group_commit_max_batches": 7, "group_commit_max_bytes": 4096, "staging": False, "events_maxlen": 13,
        "backup_keep_all_hours": 2.5, "backup_hourly_days": 3.5, "backup_compress_after_hours": 4.5,
        "backup_max_bytes": 12345, "backup_warn_ratio": 0.5,
        "log_format": "json",
    }
    assert set(changed) == set(Settings.model_fields), "a new field: add it here with a non-default value"
    (tmp_path / "redis_password").write_text("pw\n")
    env = load_settings(**changed).to_env()
    assert all(name.startswith("CATALOG_") and isinstance(value, str) for name, value in env.items())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rebuilt = load_settings()
    assert {name: getattr(rebuilt, name) for name in changed} == changed


def test_to_env_gives_absolute_paths_and_leaves_out_unset_options(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    env = load_settings(path=Path("relative/products.json")).to_env()
    assert env["CATALOG_PATH"] == str(tmp_path / "relative" / "products.json")
    assert env["CATALOG_BACKUP_DIR"] == str(tmp_path / "relative" / "backups")
    assert "CATALOG_RESULT_URL" not in env


def test_a_rediss_url_verifies_certificates_unless_it_says_otherwise() -> None:
    assert load_settings(redis_url="rediss://h:1/0").redis_url == "rediss://h:1/0?ssl_cert_reqs=required"
    assert (load_settings(redis_url="rediss://h:1/0?ssl_ca_certs=/ca.pem").redis_url
            == "rediss://h:1/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    assert load_settings(redis_url="rediss://h:1/0?ssl_cert_reqs=none").redis_url == "rediss://h:1/0?ssl_cert_reqs=none"
    assert load_settings(result_url="rediss://h:1/1").result_backend == "rediss://h:1/1?ssl_cert_reqs=required"
    assert load_settings(redis_url="redis://h:1/0").redis_url == "redis://h:1/0"
    with pytest.raises(SettingsError, match="CATALOG_REDIS_URL: .*redis://, rediss:// or unix://"):
        load_settings(redis_url="localhost:6379")


def test_a_password_file_puts_the_password_into_redis_urls_without_one(tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("pw/with@odd:chars\n")  # a trailing newline, as `echo` writes it, is not part of it
    settings = load_settings(redis_password_file=secret, result_url="redis://h:1/3")
    assert settings.redis_url == "redis://:pw%2Fwith%40odd%3Achars@localhost:6379/0"
    assert settings.result_backend == "redis://:pw%2Fwith%40odd%3Achars@h:1/3"
    acl = load_settings(redis_password_file=secret, redis_url="rediss://app@h:1/0")
    assert acl.redis_url == "rediss://app:pw%2Fwith%40odd%3Achars@h:1/0?ssl_cert_reqs=required"
    assert load_settings(**{k[8:].lower(): v for k, v in settings.to_env().items()}) .redis_url == settings.redis_url


def test_a_password_file_that_cannot_be_used_is_refused_without_showing_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("the-file-password")
    with pytest.raises(SettingsError, match="CATALOG_REDIS_PASSWORD_FILE: cannot read") as missing:
        load_settings(redis_password_file=tmp_path / "missing")
    with pytest.raises(SettingsError, match="carries another password") as both:
        load_settings(redis_password_file=secret, redis_url="redis://:url-password@h:1/0")
    for error in (missing, both):
        assert "the-file-password" not in str(error.value) and "url-password" not in str(error.value)
    secret.write_text("")
    with pytest.raises(SettingsError, match="is empty"):
        load_settings(redis_password_file=secret)
