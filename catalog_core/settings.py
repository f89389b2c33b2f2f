"""The one settings object. Built by ``load_settings`` and passed down; nothing reads it at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog_core.errors import SettingsError


class Settings(BaseSettings):
    """Configuration of catalog-ingest, read from ``CATALOG_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore", frozen=True)

    path: Path = Field(Path("./data/products.json"), description="The catalog file.")
    backup_dir: Path | None = Field(None, description="Backups folder; default: backups/ beside the catalog.")
    redis_url: str = Field("redis://localhost:6379/0", description="Redis for the lock and the broker.")
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
    result_url: str | None = Field(None, description="Result backend; default: the Redis of redis_url.")
    queue: str = Field("catalog-ingest", min_length=1, description="Queue the batches travel on.")
    visibility_timeout: int = Field(900, ge=5, description="Seconds before an unacknowledged batch is redelivered.")
    task_time_limit: int = Field(600, ge=3, description="Hard limit on one batch, in seconds.")
    restore_interval: int = Field(5, ge=1, description="Seconds between sweeps for batches of dead workers.")
    max_retries: int = Field(8, ge=0, description="Retries of a batch after a lock timeout or Redis failure.")
    retry_backoff_max: int = Field(120, ge=1, description="Longest wait between retries, in seconds.")
    result_expires: int = Field(7 * 24 * 3600, ge=60, description="Seconds batch results are kept.")
    rejected_keep: int = Field(10_000, ge=1, description="How many rejected batches are remembered.")
    rotate_every: float = Field(3600, gt=0, description="Seconds between backup rotations (beat).")

    @model_validator(mode="after")
    def _limits_fit_together(self) -> Settings:
        # A batch still running when its visibility timeout ends would be delivered to a
        # second worker while the first still works on it: the hard limit must end it first.
        # And a batch waiting for the lock must reach its own lock timeout (and be retried)
        # before the soft time limit stops it.
        if not self.lock_timeout < self.soft_time_limit < self.task_time_limit < self.visibility_timeout:
            raise ValueError(
                "need lock_timeout < soft time limit < task_time_limit < visibility_timeout, the soft limit "
                "being task_time_limit less 10% (at least 5 s) "
                f"(got {self.lock_timeout:g} < {self.soft_time_limit} < {self.task_time_limit} < "
                f"{self.visibility_timeout})"
            )
        if self.retry_backoff_max >= self.visibility_timeout:
            raise ValueError("retry_backoff_max must be shorter than visibility_timeout")
        return self

    @property
    def soft_time_limit(self) -> int:
        """The soft limit leaves a batch time to clean up (remove its temp files) before the hard kill."""
        return max(self.task_time_limit - max(5, self.task_time_limit // 10), 1)

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


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI options) winning.

    Overrides whose value is None are ignored, so CLI options can be passed straight through.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"CATALOG_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
