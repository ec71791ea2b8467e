"""``cascade maintain``: expire snapshots, compact small files, rewrite manifests, remove orphan files.

A thin layer over :mod:`cascade.maintenance`; defaults come from ``[maintenance]`` in ``cascade.toml``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cascade_cli.app import session
from cascade_cli.options import JsonOption

if TYPE_CHECKING:
    from rich.table import Table

    from cascade import MaintenancePolicy, MaintenanceReport


def maintain_command(
    ctx: typer.Context,
    tables: Annotated[
        list[str] | None, typer.Argument(metavar="[TABLE]...", help="namespace.table (default: every table).")
    ] = None,
    expire_older_than: Annotated[
        str | None, typer.Option("--expire-older-than", help="Expire snapshots older than this (7d, 12h...).")
    ] = None,
    retain_last: Annotated[
        int | None, typer.Option("--retain-last", min=1, help="Keep at least this many snapshots per branch.")
    ] = None,
    no_expire: Annotated[bool, typer.Option("--no-expire", help="Skip snapshot expiry.")] = False,
    compact: Annotated[
        bool | None, typer.Option("--compact/--no-compact", help="Rewrite small data files per partition.")
    ] = None,
    target_file_size: Annotated[
        str | None, typer.Option("--target-file-size", help="Compacted file size (128MB, 64MiB...).")
    ] = None,
    rewrite_manifests: Annotated[
        bool | None, typer.Option("--rewrite-manifests/--no-rewrite-manifests", help="Merge manifests into few.")
    ] = None,
    remove_orphans: Annotated[
        bool | None,
        typer.Option("--remove-orphans/--no-remove-orphans", help="Delete files no metadata references."),
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Remove orphan files only older than this (3d...).")
    ] = None,
    branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to compact and rewrite.")] = "main",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would change; change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Expire old snapshots, and compact files, rewrite manifests and remove orphans when asked."""
    from pyiceberg.exceptions import NoSuchTableError
    from rich.markup import escape

    from cascade import ConfigurationError, all_tables, load_config, maintain, open_catalog, parse_identifier
    from cascade_cli.output import first_line, print_json

    config = load_config()
    policy = policy_from_options(
        config.maintenance,
        expire_older_than=expire_older_than,
        retain_last=retain_last,
        compact=compact,
        target_file_size=target_file_size,
        rewrite_manifests=rewrite_manifests,
        remove_orphans=remove_orphans,
        older_than=older_than,
    )
    catalog = open_catalog(config)
    names = [parse_identifier(t) for t in tables] if tables else all_tables(catalog)
    try:
        loaded = [catalog.load_table(name) for name in names] if tables else None
    except NoSuchTableError as error:
        raise ConfigurationError(f"{error} (see: cascade tables)") from None
    reports: list[MaintenanceReport] = []
    failures: list[tuple[str, BaseException]] = []
    for position, name in enumerate(names):
        try:
            table = loaded[position] if loaded is not None else catalog.load_table(name)
            reports.append(
                maintain(
                    table,
                    policy,
                    expire=not no_expire,
                    branch=branch,
                    dry_run=dry_run,
                    attempts=config.commit_attempts,
                )
            )
        except Exception as error:  # one table failing does not stop the others; all are reported
            failures.append((name, error))
    if as_json:
        errors = [{"table": name, "error": f"{type(e).__name__}: {e}"} for name, e in failures]
        print_json({"reports": [r.as_dict() for r in reports], "errors": errors}, indent=2)
    else:
        session(ctx).out.print(report_table(reports, dry_run))
    for name, problem in failures:
        message = f"[bold red]error:[/] table {escape(name)}: {escape(first_line(problem))}"
        session(ctx).err.print(message, highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def policy_from_options(
    policy: MaintenancePolicy,
    *,
    expire_older_than: str | None,
    retain_last: int | None,
    compact: bool | None,
    target_file_size: str | None,
    rewrite_manifests: bool | None,
    remove_orphans: bool | None,
    older_than: str | None,
) -> MaintenancePolicy:
    """``[maintenance]`` with the options given on the command line on top."""
    from cascade import parse_duration, parse_size

    changes: dict[str, Any] = {}
    if expire_older_than is not None:
        changes["expire_older_than"] = parse_duration(expire_older_than, what="--expire-older-than")
    if retain_last is not None:
        changes["retain_last"] = retain_last
    if compact is not None:
        changes["compact"] = compact
    if target_file_size is not None:
        changes["target_file_size"] = parse_size(target_file_size, what="--target-file-size")
    if rewrite_manifests is not None:
        changes["rewrite_manifests"] = rewrite_manifests
    if remove_orphans is not None:
        changes["remove_orphans"] = remove_orphans
    if older_than is not None:
        changes["orphan_older_than"] = parse_duration(older_than, what="--older-than")
    return dataclasses.replace(policy, **changes)


def report_table(reports: list[MaintenanceReport], dry_run: bool) -> Table:
    from rich.table import Table

    view = Table(title="Cascade maintenance" + (" (dry run: nothing changed)" if dry_run else ""))
    for column in ("table", "files compacted", "manifests", "snapshots expired", "orphans removed", "seconds"):
        view.add_column(column)
    for r in reports:
        compacted = f"{r.compaction.files_removed} → {r.compaction.files_added}" if r.compaction else "-"
        manifests = f"{r.manifests.manifests_before} → {r.manifests.manifests_after}" if r.manifests else "-"
        expired = f"{len(r.expiry.snapshots_expired)} (kept {r.expiry.snapshots_kept})" if r.expiry else "-"
        orphans = f"{len(r.orphans.files_removed)} ({r.orphans.bytes_removed:,} B)" if r.orphans else "-"
        view.add_row(r.table, compacted, manifests, expired, orphans, f"{r.seconds:.2f}")
    return view
