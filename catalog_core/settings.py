"""The one settings object. Built by ``load_settings`` and passed down; nothing reads it at import."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog_core.errors import SettingsError
from catalog_core.settings_rules import (RULES, TIMING_FIELDS, describe_combination, invalid_configuration,
                                         soft_time_limit, timing_problems, unknown_variables, variable,
                                         working_combination)


REDIS_SCHEMES = ("redis", "rediss", "unix")


class Settings(BaseSettings):
    """Configuration of catalog-ingest, read from ``CATALOG_*`` environment variables.

    Each field is checked here; the timing rules between the Celery fields are checked by
    ``load_settings`` (``check_timing_rules``), all at once and only where they matter.
    """

    # hide_input_in_errors: a ValidationError must not echo a value, the Redis URL's password least of all.
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True, hide_input_in_errors=True)

    path: Path = Field(Path("./data/products.json"), description="The catalog file.")
    backup_dir: Path | None = Field(None, description="Backups folder; default: backups/ beside the catalog.")
    redis_password_file: Path | None = Field(
        None, description="File holding the Redis password (a Docker secret), put into redis_url and result_url."
    )
    # repr=False: the URLs may carry a password, and settings end up in logs and tracebacks.
    redis_url: str = Field("redis://localhost:6379/0", repr=False, validate_default=True,
                           description="Redis for the lock and the broker.")
    backup_retention_days: float = Field(7, ge=0, description="Backups older than this are rotated away.")
    lock_expire: int = Field(30, ge=2, description="Seconds the lock lives without renewal.")
    lock_timeout: float = Field(60, gt=0, description="Seconds to wait for the lock.")
    max_batch_items: int = Field(5000, ge=1, description="Most records one batch may carry.")
    max_batch_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest batch, in bytes of JSON.")
    max_file_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest file that may be split into "
                                "batches (enqueue --chunk-size), in bytes; read as a stream, never whole.")

    ledger_days: float = Field(30, gt=0, description="Days a batch id is remembered as applied.")
    ledger_max_ids: int = Field(20_000, ge=1, description="Most batch ids remembered as applied.")

    # Celery (workers, producers, beat)
    result_url: str | None = Field(None, repr=False, description="Result backend; default: the Redis of redis_url.")
    queue: str = Field("catalog-ingest", min_length=1, description="Queue the batches travel on.")
    visibility_timeout: int = Field(900, ge=5, description="Seconds before an unacknowledged batch is redelivered.")
    task_time_limit: int = Field(600, ge=3, description="Hard limit on one batch, in seconds.")
    restore_interval: int = Field(5, ge=1, description="Seconds between sweeps for batches of dead workers.")
    max_retries: int = Field(8, ge=0, description="Retries of a batch after a lock timeout or Redis failure.")
    retry_backoff_max: int = Field(120, ge=1, description="Longest wait between retries, in seconds.")
    result_expires: int = Field(7 * 24 * 3600, ge=60, description="Seconds batch results are kept.")
    worker_threads: int = Field(64, ge=1, le=256, description="Batches one worker process holds at once (Celery "
                                "threads pool). Those that arrive while a commit runs share the next commit.")
    group_commit_max_batches: int = Field(128, ge=1, le=10_000, description="Most batches one commit carries.")
    group_commit_max_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Most bytes of other workers' "
                                        "staged batches one commit takes (at least one): bounds a holder's memory.")
    staging: bool = Field(True, description="A worker that finds the lock held hands its batches to the holder "
                          "(through <lock>:staging in Redis) instead of queuing for the lock: the holder keeps "
                          "committing with its catalog cached, and more workers add throughput.")
    events_maxlen: int = Field(10_000, ge=0, description="Events the change stream (<queue>:events) keeps, about: "
                               "how far back `catalog history` and `catalog revert` reach. 0: no change stream.")
    rejected_keep: int = Field(10_000, ge=1, description="How many rejected batches are remembered.")
    rotate_every: float = Field(3600, gt=0, description="Seconds between backup rotations (beat).")

    # Backup thinning (grandfather-father-son), compression and cap: worker/backup_policy.py
    backup_keep_all_hours: float = Field(1, ge=0, description="Every backup younger than this is kept.")
    backup_hourly_days: float = Field(1, ge=0, description="Up to this age, one backup per UTC hour is kept; "
                                      "older ones, one per UTC day until CATALOG_BACKUP_RETENTION_DAYS.")
    backup_compress_after_hours: float = Field(1, ge=0, description="Backups older than this are gzipped by "
                                               "the rotation.")
    backup_max_bytes: int = Field(2 * 1024**3, ge=0, description="Most bytes the backups may take; the "
                                  "rotation deletes the oldest beyond it (never the newest two). 0: no cap.")
    backup_warn_ratio: float = Field(0.8, gt=0, le=1, description="Health warns when the backups take this "
                                     "share of CATALOG_BACKUP_MAX_BYTES.")

    @field_validator("redis_password_file")
    @classmethod
    def _a_readable_password_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_password_file(path)
        return path

    @field_validator("redis_url", "result_url")
    @classmethod
    def _a_usable_redis_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return None
        scheme = urlsplit(url).scheme if "://" in url else ""
        if scheme not in REDIS_SCHEMES:
            # Names only the scheme: the URL itself may hold a password.
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL (got scheme {scheme[:20]!r})")
        if info.data.get("redis_password_file") is not None:
            url = with_password(url, read_password_file(info.data["redis_password_file"]))
        if scheme == "rediss" and "ssl_cert_reqs=" not in url:
            # Verify the server's certificate unless the URL says otherwise. Without this, kombu's
            # broker connection falls back to CERT_NONE with only a warning (kombu.connection
            # Connection._init_params), while redis-py verifies and Celery's result backend refuses
            # the URL: one explicit value makes the lock, the broker and the results agree.
            url += ("&" if "?" in url else "?") + "ssl_cert_reqs=required"
        return url

    def to_env(self) -> dict[str, str]:
        """The ``CATALOG_*`` variables that rebuild these settings in a child process: every field.

        Paths are made absolute, so that a child started in another folder finds the same files.
        Holds the Redis password when the URL has one: pass it to a child, never print it.
        """
        values = self.model_dump(mode="json")
        values.update(path=str(self.catalog_path), backup_dir=str(self.backup_path))
        return {
            f"CATALOG_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
            for name, value in values.items() if value is not None
        }

    @property
    def soft_time_limit(self) -> int:
        """The soft limit leaves a batch time to clean up (remove its temp files) before the hard kill."""
        return soft_time_limit(self.task_time_limit)

    @property
    def result_backend(self) -> str:
        return self.result_url or self.redis_url

    @property
    def catalog_path(self) -> Path:
        """The catalog's absolute path; the lock name and temp files derive from it."""
        return self.path.expanduser().resolve()

    @property
    def backup_path(self) -> Path:
        """The backup folder, absolute."""
        if self.backup_dir is not None:
            return self.backup_dir.expanduser().resolve()
        return self.catalog_path.parent / "backups"

    # Logs (workers, beat and the CLI). Appended last: other settings are grouped above.
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or json: one JSON object per line (batch_id, sequence, "
        "source, fence where they apply).")


def read_password_file(path: Path) -> str:
    """The password in ``path``: its first line (a trailing newline is not part of it)."""
    try:
        lines = path.expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    if not lines or not lines[0]:
        raise ValueError(f"{path} is empty")
    return lines[0]


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put in (percent-encoded); an error if it carries another one."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        if "password" not in query:
            return url + ("&" if parts.query else "?") + f"password={quote(password, safe='')}"
        given = query["password"]
    else:
        userinfo, at, host = parts.netloc.rpartition("@")
        user, has_password, given = userinfo.partition(":")
        if not has_password or not given:
            netloc = f"{user}:{quote(password, safe='')}@{host if at else parts.netloc}"
            return parts._replace(netloc=netloc).geturl()
    if unquote(given) != password:
        # Neither password is shown.
        raise ValueError("the URL carries another password than the one in CATALOG_REDIS_PASSWORD_FILE")
    return url


def load_settings(*, check_timing: bool = True, **overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI options) winning.

    Overrides whose value is None are ignored, so CLI options can be passed straight through.
    ``check_timing``: also check the Celery timing rules (``settings_rules.RULES``), which only
    matter where tasks are run, sent or followed; commands on files alone pass False.
    Every problem is in the one ``SettingsError``, in ``CATALOG_*`` names.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_field_problems(exc, given, check_timing)) from None
    if check_timing:
        check_timing_rules(settings)
    return settings


def _timing_message(settings: Settings) -> tuple[list[str], list[str]]:
    """The timing problems of ``settings`` and, if any, the advice: the rules and a combination that works."""
    values = {field: getattr(settings, field) for field in TIMING_FIELDS}
    problems = timing_problems(values)
    if not problems:
        return [], []
    given = settings.model_fields_set
    proposal = describe_combination(values, working_combination(values, given), given)
    return problems, [f"The rules: {RULES}", f"A combination that works: {proposal}"]


def check_timing_rules(settings: Settings) -> None:
    """Raise one ``SettingsError`` naming every broken timing rule, with a combination that works."""
    problems, advice = _timing_message(settings)
    if problems:
        raise SettingsError(invalid_configuration(problems, advice))


def _field_problems(exc: ValidationError, given: dict[str, Any], check_timing: bool) -> str:
    """Every bad value and, the bad fields set aside, every broken timing rule among the others."""
    problems = [
        f"{variable('_'.join(str(p) for p in err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
        if err["loc"] else err["msg"].removeprefix("Value error, ")
        for err in exc.errors()
    ]
    bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    advice: list[str] = []
    if check_timing and not bad & set(TIMING_FIELDS):
        try:  # the bad fields at their defaults (an override wins over the environment)
            rest = Settings(**{**given, **{name: Settings.model_fields[name].default for name in bad}})
        except ValidationError:
            rest = None
        if rest is not None:
            timing, advice = _timing_message(rest)
            problems += timing
    return invalid_configuration(problems, advice)


def unknown_setting_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``CATALOG_*`` variables in ``environ`` that set nothing (a typo, an old name), each with the
    nearest setting; ``settings_rules.NOT_SETTINGS`` lists those that are legitimate."""
    return unknown_variables(environ, [variable(name) for name in Settings.model_fields])
