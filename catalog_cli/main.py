"""Entry point of the ``catalog`` command: wiring, logging, and errors mapped to exit codes."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from catalog_core.errors import CatalogError, SettingsError
from catalog_core.logs import TEXT_FORMAT, apply_format, url_secrets
from catalog_core.settings import load_settings
from catalog_cli import (backup_commands, chaos_command, config_command, dev, diff_command, events_commands,
                         health_command, lock_command, metrics_command, queue_commands, schema_command, store_commands)
from catalog_cli.output import err, show

app = typer.Typer(
    name="catalog",
    help=(
        "Ingest product batches into the catalog (products.json) safely.\n\n"
        "Exit codes: 0 done, 1 batch rejected (or a duplicate with other records) or catalog invalid, "
        "2 bad input (file, option, backup name, settings), 3 cannot write safely (Redis, lock, corrupt "
        "catalog, batch failed or lost), 4 still pending, 5 unknown batch id (status). "
        "`catalog config` shows the settings in effect."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens (to stderr).")] = False,
) -> None:
    """Set up logging for every command: CATALOG_LOG_FORMAT (text or json), passwords masked."""
    try:
        settings = load_settings(check_timing=False)
        log_format, secrets = settings.log_format, url_secrets([settings.redis_url, settings.result_url])
    except SettingsError:
        log_format, secrets = "text", set()  # the command itself reports the bad settings
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=TEXT_FORMAT)
    apply_format(logging.getLogger(), log_format, secrets)


app.command()(store_commands.validate)
app.command()(store_commands.apply)
app.command()(store_commands.verify)
app.command()(store_commands.stats)
app.command()(diff_command.diff)
app.command()(queue_commands.enqueue)
app.command()(queue_commands.status)
app.command()(queue_commands.rejected)
app.command()(schema_command.schema)
app.command()(config_command.config)
app.command()(events_commands.watch)
app.command()(events_commands.history)
app.command()(events_commands.revert)
app.command()(health_command.health)
app.command()(lock_command.lock)
app.command()(metrics_command.metrics)
app.add_typer(backup_commands.app, name="backups")
app.command()(dev.dev)
app.command()(chaos_command.chaos)


def main() -> None:
    """Run the CLI; a ``CatalogError`` is a message and an exit code, never a traceback."""
    try:
        app()
    except CatalogError as exc:
        err.print(f"[red]error:[/] {show(exc, keep_newlines=True)}", markup=True, highlight=False)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
