"""The one error hierarchy of catalog-ingest.

Every error a user can cause or meet is a ``CatalogError``. Each class carries
the CLI exit code it maps to, so the CLI never has to guess, and the worker can
tell a permanent problem (``retryable = False``) from a passing one.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_CANNOT_WRITE = 3
EXIT_PENDING = 4
EXIT_UNKNOWN = 5


class CatalogError(Exception):
    """Raised when catalog-ingest cannot do what it was asked; the base of all its errors."""

    exit_code: int = EXIT_CANNOT_WRITE
    retryable: bool = False


class SettingsError(CatalogError):
    """Raised when the configuration (environment or options) is invalid."""

    exit_code = EXIT_BAD_INPUT


class InputFileError(CatalogError):
    """Raised when a batch file is missing, unreadable or not valid JSON/JSONL."""

    exit_code = EXIT_BAD_INPUT


class FilesUnreadableError(CatalogError):
    """Raised when one or more batch files cannot be read or parsed; lists every problem."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems) + "\nnothing was applied")


class BatchTooLargeError(CatalogError):
    """Raised when a batch has more records or bytes than the configured limits allow."""

    exit_code = EXIT_BAD_INPUT

    @classmethod
    def check_items(cls, count: int, limit: int, what: str = "batch") -> None:
        """The one check (and message) of ``CATALOG_MAX_BATCH_ITEMS``, at producer, CLI and worker."""
        if count > limit:
            raise cls(f"{what} has {count:,} records, over the limit of {limit:,} (CATALOG_MAX_BATCH_ITEMS); "
                      "split it into smaller batches (catalog enqueue --chunk-size N)")

    @classmethod
    def check_bytes(cls, size: int, limit: int, what: str = "batch") -> None:
        """The one check (and message) of ``CATALOG_MAX_BATCH_BYTES``, at producer and worker."""
        if size > limit:
            raise cls(f"{what} is {size:,} bytes of JSON, over the {limit:,}-byte limit (CATALOG_MAX_BATCH_BYTES); "
                      "split it into smaller batches (catalog enqueue --chunk-size N)")


class BatchRefusedError(CatalogError):
    """Raised when a producer's own checks refuse a batch, so it never enters the queue."""

    exit_code = EXIT_REJECTED

    def __init__(self, message: str, errors: list[Any]) -> None:
        super().__init__(message)
        self.errors = errors


class WaitTimeoutError(CatalogError):
    """Raised when a batch has no final result before the wait timeout; it may still be applied later."""

    exit_code = EXIT_PENDING


class CatalogCorruptError(CatalogError):
    """Raised when the catalog file exists but is not a valid catalog, so it must not be overwritten."""


class CatalogMissingError(CatalogError):
    """Raised when a command needs an existing catalog file and there is none."""

    exit_code = EXIT_BAD_INPUT


class RedisUnavailableError(CatalogError):
    """Raised when the Redis server cannot be reached or fails mid-operation."""

    retryable = True


class LockTimeoutError(CatalogError):
    """Raised when the catalog lock could not be acquired before the timeout."""

    retryable = True


class LockBusyError(LockTimeoutError):
    """Raised by a writer that asked for the catalog lock without waiting while another writer held it
    (a worker then hands its batches to that writer: worker/group_commit.py)."""


class LockLostError(CatalogError):
    """Raised when the catalog lock stopped being ours before the commit, so the write was abandoned."""

    retryable = True


class FencedError(CatalogError):
    """Raised when a writer with a newer fencing token committed since this writer read the catalog."""

    retryable = True


class ProductNotYetCreatedError(CatalogError):
    """Raised when a batch patches products that do not exist yet while lower-sequence batches are pending."""

    retryable = True


class BatchFailedError(CatalogError):
    """Raised when a batch could not be applied after every retry; its reason is in the message."""


class CommitError(CatalogError):
    """Raised when writing the new catalog failed; the previous catalog is left intact."""

    retryable = True


class BackupError(CatalogError):
    """Raised when a backup cannot be made, found or restored."""


class BatchNotFoundError(CatalogError):
    """Raised when a batch asked for by id is not where it should be (the change stream, for a revert)."""

    exit_code = EXIT_UNKNOWN


class BackupNotFoundError(BackupError):
    """Raised when a named backup does not exist in the backup folder or the name is not a backup name."""

    exit_code = EXIT_BAD_INPUT


class DevToolsMissingError(CatalogError):
    """Raised when ``catalog dev`` or ``catalog chaos`` run where devtools/ is not installed."""

    exit_code = EXIT_BAD_INPUT


class ProcessStartError(CatalogError):
    """Raised when a supervised process (worker, beat) of the dev stack, the chaos suite or a benchmark
    fails to start or dies."""


class BackupFolderFullError(CommitError):
    """Raised when the backup of the replaced catalog cannot be written because its disk or quota is full;
    nothing was committed."""
