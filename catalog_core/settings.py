"""The one settings object. Built by ``load_settings`` and passed down; nothing reads it at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
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
            f"CATALOG_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
