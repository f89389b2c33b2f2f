"""catalog_core.celery_config: the reliability settings producers and workers share."""

from __future__ import annotations

from catalog_core.celery_config import celery_config
from catalog_core.settings import load_settings
from worker.app import create_app, worker_config


def test_only_json_is_sent_or_accepted() -> None:
    config = celery_config(load_settings())
    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["accept_content"] == config["result_accept_content"] == ["json"]


def test_batches_are_acknowledged_late_and_requeued_when_a_worker_dies() -> None:
    config = celery_config(load_settings())
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1


def test_the_visibility_timeout_is_set_for_broker_and_results_and_swept_promptly() -> None:
    config = celery_config(load_settings(visibility_timeout=120, task_time_limit=100, lock_timeout=30, retry_backoff_max=60,
                                         restore_interval=2))
    assert config["broker_transport_options"]["visibility_timeout"] == 120
    assert config["result_backend_transport_options"]["visibility_timeout"] == 120
    assert config["broker_transport_options"]["unacked_restore_interval"] == 2
    assert config["broker_transport_options"]["unacked_restore_throttle"] == 1


def test_time_limits_end_a_batch_before_it_could_be_redelivered() -> None:
    settings = load_settings()
    config = celery_config(settings)
    assert config["task_soft_time_limit"] < config["task_time_limit"] < settings.visibility_timeout
    assert config["task_soft_time_limit"] > settings.lock_timeout


def test_batches_travel_on_the_configured_queue() -> None:
    config = celery_config(load_settings(queue="catalog-test"))
    assert config["task_default_queue"] == "catalog-test"


def test_the_worker_app_is_configured_only_when_celery_needs_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = create_app()
    monkeypatch.setenv("CATALOG_REDIS_URL", "redis://late:7/0")
    assert app.conf.broker_url == "redis://late:7/0"
    assert {"catalog.ingest_batch", "catalog.rotate_backups"} <= set(app.tasks)


def test_beat_rotates_backups_at_the_configured_period() -> None:
    schedule = worker_config(load_settings(rotate_every=42))["beat_schedule"]["rotate-backups"]
    assert (schedule["task"], schedule["schedule"]) == ("catalog.rotate_backups", 42)


def test_invalid_settings_stop_the_worker_instead_of_falling_back_to_celerys_defaults(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from catalog_core.errors import SettingsError

    app = create_app()
    monkeypatch.setenv("CATALOG_LOCK_TIMEOUT", "900")
    with pytest.raises(SettingsError, match="CATALOG_LOCK_TIMEOUT"):
        _ = app.conf.broker_url


def test_workers_use_the_transport_and_consumer_that_survive_redis_restarts_and_bad_messages() -> None:
    app = create_app(load_settings())
    assert app.conf.broker_transport == "catalog-redis"
    assert app.conf.worker_consumer == "worker.bad_messages:Consumer"
    connection = app.connection_for_read()
    assert type(connection.transport).__module__ == "worker.broker_transport"  # and still a redis:// URL
    assert connection.as_uri() == "catalog-redis://:**@localhost:6379/0"  # like redis://, password masked


def test_producers_need_neither() -> None:
    config = celery_config(load_settings())
    assert "broker_transport" not in config and "worker_consumer" not in config


def test_each_app_in_one_process_runs_its_own_tasks_with_its_own_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Celery shares a decorated task with every app created later in the process unless told
    # not to: the second app would then rotate the first app's backups.
    import datetime as dt

    from worker.backups import backup_name

    apps, old_backups = [], []
    for name in ("first", "second"):
        settings = load_settings(path=tmp_path / name / "products.json")
        settings.backup_path.mkdir(parents=True)
        month_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
        old_backups.append(settings.backup_path / backup_name(settings.catalog_path, month_ago))
        old_backups[-1].write_bytes(b"[]")
        apps.append(create_app(settings))
    apps[1].tasks["catalog.rotate_backups"].run()
    assert old_backups[0].exists() and not old_backups[1].exists()
