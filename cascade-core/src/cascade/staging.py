"""Extract and stage: run the asset's dlt source through a real dlt pipeline to parquet.

Cascade stops dlt after *normalize*: the load package's parquet files are the staged batch,
read back as one Arrow table. Each run has its own pipeline folder under the Cascade home
(``pipelines/<namespace>.<table>/<branch>/<partition>/<run id>``), so concurrent runs, even of
the same asset, never share dlt state, and a dead run's leftovers cannot poison the next one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dlt.pipeline.exceptions import PipelineStepFailed

from cascade.faults import crash_point
from cascade.records import SEQUENCE, SourcePositions, positions_column, restore_source_order

DLT_COLUMNS = ("_dlt_id", "_dlt_load_id")


@dataclass(frozen=True)
class PipelinePlace:
    """Where one run's dlt pipeline lives."""

    pipelines_dir: Path
    pipeline_name: str

    @property
    def path(self) -> Path:
        return self.pipelines_dir / self.pipeline_name


@dataclass(frozen=True)
class StagedBatch:
    """The parquet files dlt wrote for one run, and their rows as one Arrow table."""

    data: pa.Table
    files: tuple[str, ...]
    bytes_staged: int
    resource: str | None


def pipeline_place(home: Path, identifier: str, branch: str, partition: str, run_id: str) -> PipelinePlace:
    """The run's own pipeline folder; names are already checked identifiers, dates and ids.

    A branch may hold ``/`` (``feature/x``): it becomes ``~``, which branch names cannot hold, so the
    branch stays one folder level (``%``-escapes would break dlt's file name templates).
    """
    folder = branch.replace("/", "~")
    return PipelinePlace(home / "pipelines" / identifier / folder / partition, f"run_{run_id}")


def leftover_pipelines(home: Path) -> list[Path]:
    """Pipeline folders of runs that never finished (their process died before clean-up)."""
    root = home / "pipelines"
    return sorted(p for p in root.glob("*/*/*/run_*") if p.is_dir()) if root.is_dir() else []


def make_pipeline(place: PipelinePlace, dataset: str) -> dlt.Pipeline:
    place.pipelines_dir.mkdir(parents=True, exist_ok=True)
    progress: Any = "log" if os.environ.get("CASCADE_DLT_PROGRESS") else None
    pipeline = dlt.pipeline(
        pipeline_name=place.pipeline_name,
        pipelines_dir=str(place.pipelines_dir),
        destination=capabilities_destination(place),
        dataset_name=dataset,
        progress=progress,
    )
    # The pipeline lives for one run and never loads: there is no destination to restore its state
    # from, and extracting that state into the package was a second extract in every run (a tiny day:
    # 139 ms a run for extract, stage and merge, 90 ms without it).
    pipeline.config.restore_from_destination = False
    return pipeline


def capabilities_destination(place: PipelinePlace) -> Any:
    """dlt's filesystem destination, there for its capabilities: normalize needs them; nothing is loaded.

    dlt resolves the destination's configuration from every provider each time it asks for the
    capabilities, six times in a run: a quarter of extract and normalize on a small day (102 ms
    a run against 80 ms resolved once). Within one run the answer cannot change, so this
    destination (one per run) resolves it once.
    """
    destination = dlt.destinations.filesystem(bucket_url=(place.path / "unloaded").as_uri())
    resolve = destination.configuration
    resolved: dict[str, Any] = {}

    def configuration(initial_config: Any, accept_partial: bool = False) -> Any:
        if not accept_partial:  # a full configuration, for a load: never asked for here
            return resolve(initial_config, accept_partial)
        if "partial" not in resolved:
            resolved["partial"] = resolve(initial_config, accept_partial=True)
        return resolved["partial"]

    destination.configuration = configuration  # type: ignore[method-assign]
    return destination


def extract(pipeline: dlt.Pipeline, source: Any) -> None:
    """Run the source: dlt pulls every record and writes its extract files."""
    pipeline.extract(source, loader_file_format="parquet")


@dataclass(frozen=True)
class StagedFiles:
    """The parquet files dlt wrote for one run, known from their footers (no rows read yet)."""

    files: tuple[str, ...]
    bytes_staged: int
    resource: str | None
    rows: int
    memory_bytes: int  # what reading them whole would hold as Arrow tables (estimated from a sample)


def stage(pipeline: dlt.Pipeline) -> StagedBatch:
    """Normalize the extracted records to parquet and read them back as one table."""
    staged = stage_files(pipeline)
    return StagedBatch(read_staged(staged), staged.files, staged.bytes_staged, staged.resource)


def stage_files(pipeline: dlt.Pipeline) -> StagedFiles:
    """Normalize the extracted records to parquet; read only the files' footers."""
    info = pipeline.normalize()
    files: list[str] = []
    resources: set[str] = set()
    for load_id in info.loads_ids:
        package = pipeline.get_load_package_info(load_id)
        for job in package.jobs["new_jobs"]:
            table = job.job_file_info.table_name
            if table.startswith("_dlt_"):
                continue
            parent = pipeline.default_schema.tables.get(table, {}).get("parent")
            if parent is not None:
                raise NestedDataError(table, parent)
            resources.add(table)
            files.append(job.file_path)
    if len(resources) > 1:
        raise MultipleTablesError(sorted(resources))
    crash_point("mid-stage")
    footers = [pq.ParquetFile(f).metadata for f in files]
    rows = sum(m.num_rows for m in footers)
    return StagedFiles(
        files=tuple(files),
        bytes_staged=sum(os.path.getsize(f) for f in files),
        resource=next(iter(resources), None),
        rows=rows,
        memory_bytes=int(arrow_bytes_per_row(files, footers) * rows),
    )


def arrow_bytes_per_row(files: Sequence[str], footers: Sequence[pq.FileMetaData]) -> float:
    """Bytes per row once read into Arrow, measured on the first row group.

    Parquet's own uncompressed size undercounts what reading holds: dictionary- and run-length-
    encoded pages (a repeated timestamp, a low-cardinality string) expand to full columns.
    """
    for path, footer in zip(files, footers, strict=True):
        if footer.num_rows:
            sample = pq.ParquetFile(path).read_row_group(0)
            return float(sample.nbytes) / max(1, int(sample.num_rows))
    return 0.0


def read_staged(staged: StagedFiles) -> pa.Table:
    """All staged rows as one table, in the order the source yielded them."""
    data = restore_source_order(read_parquet(list(staged.files)))
    return data.drop_columns([c for c in DLT_COLUMNS if c in data.column_names])


def stream_staged(staged: StagedFiles, chunk_rows: int, superseded: pa.Array) -> Iterator[pa.Table]:
    """The staged rows in chunks of at most ``chunk_rows``, without the ``superseded`` records.

    With superseded records dropped every key appears once in the whole batch, so the order of
    the chunks no longer matters for "the last record wins". ``superseded`` holds positions as
    :func:`cascade.records.batch_keys` numbered them: files in the same order, items across chunks.
    """
    positions = SourcePositions()
    for path in staged.files:
        for record_batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=chunk_rows):
            chunk = pa.Table.from_batches([record_batch])
            if len(superseded) and SEQUENCE in chunk.column_names:
                chunk = positions_column(chunk, positions)
                chunk = chunk.filter(pc.invert(pc.is_in(chunk.column(SEQUENCE), value_set=superseded)))
            chunk = restore_source_order(chunk)
            yield chunk.drop_columns([c for c in DLT_COLUMNS if c in chunk.column_names])


def read_column(files: Sequence[str], column: str) -> pa.ChunkedArray:
    """One column of every staged file."""
    return pa.chunked_array([pq.read_table(path, columns=[column]).column(column) for path in files])


def read_parquet(files: list[str]) -> pa.Table:
    if not files:
        return pa.table({})
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def remove_pipeline(place: PipelinePlace) -> None:
    shutil.rmtree(place.path, ignore_errors=True)


def underlying_errors(error: BaseException) -> Iterator[BaseException]:
    """The chain of causes below a dlt step failure, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        inner = getattr(current, "exception", None) if isinstance(current, PipelineStepFailed) else None
        current = inner or current.__cause__ or current.__context__


class NestedDataError(Exception):
    def __init__(self, table: str, parent: str) -> None:
        self.table = table
        super().__init__(
            f"the source produced a nested child table {table!r} (from a list in {parent!r}); "
            "map nested lists to columns in the source (e.g. an add_map) so no data is dropped"
        )


class MultipleTablesError(Exception):
    def __init__(self, tables: list[str]) -> None:
        super().__init__(f"the source produced {len(tables)} tables {tables}; an asset lands exactly one table")
