"""How an asset's table follows its definition: a diff, decided before any data moves, and applying it.

The asset (``iceberg_schema``, ``unique_key``, ``partition_spec``) is compared with the table
(its current schema, the ``cascade.unique-key`` property it records, its default partition spec).
Columns are matched by *name* to the table's field ids: an asset's field ids need not be the
table's, and a renamed column reads as one removed and one added (a rename is never guessed).

- *Additive* changes are applied automatically before a merge: a new optional column (stored rows
  read it as null), a type widening Iceberg allows (int -> long, float -> double, a decimal's
  precision), a required column made optional.
- *Breaking* changes raise :class:`~cascade.errors.SchemaEvolutionError`, naming every change
  and how to proceed, with nothing committed. Some can be applied on purpose
  (``cascade schema apply ASSET --allow ...``): a partition spec change (new data is written
  with the new spec, stored files keep theirs), a unique key change (only when the stored rows
  are unique under the new key), dropping a removed column.

pyiceberg's ``UpdateSchema.union_by_name`` is not used to decide: it keeps the wider type without
a word when the asset narrows one, and (0.12) lets a decimal change its scale. The diff decides;
``UpdateSchema``/``UpdateSpec`` apply exactly what it allows, in one table commit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StructType,
)

from cascade.catalog import branches, open_catalog
from cascade.config import CascadeConfig
from cascade.errors import MergeConflictError, SchemaEvolutionError
from cascade.naming import table_identifier
from cascade.pyiceberg_compat import require_ref_heads
from cascade.spec import AssetSpec

UNIQUE_KEY_PROPERTY = "cascade.unique-key"
APPLY_ATTEMPTS = 5  # a concurrent writer evolving the same table makes ours re-diff, not fail


class Allow(StrEnum):
    """Breaking changes that ``cascade schema apply --allow`` may apply on purpose."""

    PARTITION_SPEC = "partition-spec"
    UNIQUE_KEY = "unique-key"
    DROP_COLUMN = "drop-column"


class ChangeKind(StrEnum):
    ADD_COLUMN = "add-column"
    WIDEN_TYPE = "widen-type"
    MAKE_OPTIONAL = "make-optional"
    REMOVE_COLUMN = "remove-column"
    NARROW_TYPE = "narrow-type"
    CHANGE_TYPE = "change-type"
    ADD_REQUIRED_COLUMN = "add-required-column"
    MAKE_REQUIRED = "make-required"
    REUSED_NAME = "reused-name"
    UNIQUE_KEY = "unique-key"
    PARTITION_SPEC = "partition-spec"


ADDITIVE = frozenset({ChangeKind.ADD_COLUMN, ChangeKind.WIDEN_TYPE, ChangeKind.MAKE_OPTIONAL})
ALLOWED_BY = {
    ChangeKind.REMOVE_COLUMN: Allow.DROP_COLUMN,
    ChangeKind.UNIQUE_KEY: Allow.UNIQUE_KEY,
    ChangeKind.PARTITION_SPEC: Allow.PARTITION_SPEC,
}


@dataclass(frozen=True)
class Change:
    """One difference between the table (``before``) and the asset (``after``)."""

    kind: ChangeKind
    subject: str  # the column, or "unique_key" / "partition_spec"
    before: str | None
    after: str | None

    @property
    def additive(self) -> bool:
        return self.kind in ADDITIVE

    @property
    def allow(self) -> Allow | None:
        """The ``--allow`` value that applies this breaking change on purpose, if any."""
        return ALLOWED_BY.get(self.kind)

    def describe(self) -> str:
        what = {
            ChangeKind.ADD_COLUMN: f"column {self.subject!r} added ({self.after}, optional)",
            ChangeKind.WIDEN_TYPE: f"column {self.subject!r} widened from {self.before} to {self.after}",
            ChangeKind.MAKE_OPTIONAL: f"column {self.subject!r} made optional",
            ChangeKind.REMOVE_COLUMN: f"column {self.subject!r} ({self.before}) removed from iceberg_schema",
            ChangeKind.NARROW_TYPE: f"column {self.subject!r} narrowed from {self.before} to {self.after}",
            ChangeKind.CHANGE_TYPE: f"column {self.subject!r} changed type from {self.before} to {self.after}",
            ChangeKind.ADD_REQUIRED_COLUMN: f"column {self.subject!r} added as required ({self.after})",
            ChangeKind.MAKE_REQUIRED: f"column {self.subject!r} made required",
            ChangeKind.REUSED_NAME: f"column {self.subject!r} ({self.after}) added with the name of a dropped column",
            ChangeKind.UNIQUE_KEY: f"unique_key changed from {self.before} to {self.after}",
            ChangeKind.PARTITION_SPEC: f"partition_spec changed from {self.before} to {self.after}",
        }
        return what[self.kind]

    def remedy(self, asset: str) -> str:
        apply = f"cascade schema apply {asset} --allow {self.allow}" if self.allow else ""
        how = {
            ChangeKind.ADD_COLUMN: "applied automatically (stored rows read it as null)",
            ChangeKind.WIDEN_TYPE: "applied automatically",
            ChangeKind.MAKE_OPTIONAL: "applied automatically",
            ChangeKind.REMOVE_COLUMN: f"put it back in iceberg_schema (optional), or drop it from the table: {apply}",
            ChangeKind.NARROW_TYPE: (
                f"Iceberg cannot narrow a type: keep {self.before} in iceberg_schema, or add a column under a new name"
            ),
            ChangeKind.CHANGE_TYPE: (
                f"Iceberg cannot change {self.before} to {self.after}: keep {self.before} in iceberg_schema, "
                "or add a column under a new name"
            ),
            ChangeKind.ADD_REQUIRED_COLUMN: "stored rows have no value for it: declare it required=False",
            ChangeKind.MAKE_REQUIRED: "stored rows may hold nulls: keep it optional (required=False)",
            ChangeKind.REUSED_NAME: "files written before the drop still hold the old column: choose another name",
            ChangeKind.UNIQUE_KEY: (
                f"restore unique_key={self.before}, or re-key the table: {apply} "
                "(refused while stored rows collide under the new key)"
            ),
            ChangeKind.PARTITION_SPEC: (
                f"restore the partition_spec, or evolve the table: {apply} "
                "(new data uses the new spec; stored files keep theirs)"
            ),
        }
        return how[self.kind]


@dataclass(frozen=True)
class Column:
    """A column as shown by ``cascade schema diff``."""

    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class TableDiff:
    """The table against the asset: both sides, and every change between them."""

    asset: str
    table: str
    table_columns: tuple[Column, ...]
    asset_columns: tuple[Column, ...]
    table_key: tuple[str, ...] | None  # None: the table records no key
    asset_key: tuple[str, ...]
    table_partition_spec: str
    asset_partition_spec: str
    changes: tuple[Change, ...]

    @property
    def additive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.additive)

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.additive)

    def refused(self, allow: Collection[Allow] = ()) -> tuple[Change, ...]:
        """Breaking changes that ``allow`` does not cover."""
        return tuple(c for c in self.breaking if c.allow is None or c.allow not in allow)

    def as_dict(self) -> dict[str, Any]:
        def columns(items: tuple[Column, ...]) -> list[dict[str, Any]]:
            return [{"name": c.name, "type": c.type, "required": c.required} for c in items]

        return {
            "asset": self.asset,
            "table": self.table,
            "table_schema": columns(self.table_columns),
            "asset_schema": columns(self.asset_columns),
            "table_unique_key": list(self.table_key) if self.table_key is not None else None,
            "asset_unique_key": list(self.asset_key),
            "table_partition_spec": self.table_partition_spec,
            "asset_partition_spec": self.asset_partition_spec,
            "changes": [
                {
                    "kind": str(c.kind),
                    "subject": c.subject,
                    "before": c.before,
                    "after": c.after,
                    "additive": c.additive,
                    "allow": str(c.allow) if c.allow else None,
                    "description": c.describe(),
                    "remedy": c.remedy(self.asset),
                }
                for c in self.changes
            ],
        }


# --- the diff: pure functions of the table's metadata and the asset's spec ---------------------------


def diff_table(table: Table, spec: AssetSpec) -> TableDiff:
    """Compare ``table`` (its current schema, recorded key and default spec) with the asset ``spec``."""
    schema = table.schema()
    recorded = table.properties.get(UNIQUE_KEY_PROPERTY)
    table_key = tuple(recorded.split(",")) if recorded else None
    table_spec = describe_partition_spec(table.spec(), schema)
    asset_spec = describe_partition_spec(spec.partition_spec, spec.iceberg_schema)
    return TableDiff(
        asset=spec.name,
        table=".".join(table.name()),
        table_columns=columns_of(schema),
        asset_columns=columns_of(spec.table_schema),
        table_key=table_key,
        asset_key=spec.unique_key,
        table_partition_spec=table_spec,
        asset_partition_spec=asset_spec,
        changes=(
            *_reused_names(diff_schemas(schema, spec.table_schema), dropped_names(table)),
            *diff_keys(table_key, spec.unique_key),
            *diff_partition_specs(table_spec, asset_spec),
        ),
    )


def columns_of(schema: Schema) -> tuple[Column, ...]:
    return tuple(Column(f.name, str(f.field_type), f.required) for f in schema.fields)


def diff_schemas(table: Schema, asset: Schema) -> tuple[Change, ...]:
    """Column changes from ``table`` to ``asset``, top-level columns matched by name."""
    stored = {f.name: f for f in table.fields}
    wanted = {f.name for f in asset.fields}
    changes: list[Change] = []
    for field in asset.fields:
        old = stored.get(field.name)
        if old is None:
            kind = ChangeKind.ADD_REQUIRED_COLUMN if field.required else ChangeKind.ADD_COLUMN
            changes.append(Change(kind, field.name, None, str(field.field_type)))
            continue
        changes.extend(_column_changes(old, field))
    changes.extend(
        Change(ChangeKind.REMOVE_COLUMN, f.name, str(f.field_type), None) for f in table.fields if f.name not in wanted
    )
    return tuple(changes)


def dropped_names(table: Table) -> frozenset[str]:
    """Names of top-level columns an earlier schema had under a field id the current one lacks."""
    current = {f.field_id for f in table.schema().fields}
    return frozenset(f.name for s in table.schemas().values() for f in s.fields if f.field_id not in current)


def _reused_names(changes: tuple[Change, ...], dropped: frozenset[str]) -> tuple[Change, ...]:
    """An added column named like a dropped one is refused: the merge reads data files by column name."""
    return tuple(
        Change(ChangeKind.REUSED_NAME, c.subject, c.before, c.after)
        if c.kind == ChangeKind.ADD_COLUMN and c.subject in dropped
        else c
        for c in changes
    )


def _column_changes(old: NestedField, new: NestedField) -> list[Change]:
    changes = []
    if shape(old.field_type) != shape(new.field_type):
        before, after = str(old.field_type), str(new.field_type)
        if widens(old.field_type, new.field_type):
            kind = ChangeKind.WIDEN_TYPE
        elif widens(new.field_type, old.field_type):
            kind = ChangeKind.NARROW_TYPE
        else:
            kind = ChangeKind.CHANGE_TYPE
        changes.append(Change(kind, new.name, before, after))
    if old.required and not new.required:
        changes.append(Change(ChangeKind.MAKE_OPTIONAL, new.name, "required", "optional"))
    elif new.required and not old.required:
        changes.append(Change(ChangeKind.MAKE_REQUIRED, new.name, "optional", "required"))
    return changes


def widens(old: IcebergType, new: IcebergType) -> bool:
    """Whether Iceberg lets a column of type ``old`` be read as ``new`` (the promotions of the spec)."""
    if isinstance(old, IntegerType):
        return isinstance(new, LongType)
    if isinstance(old, FloatType):
        return isinstance(new, DoubleType)
    if isinstance(old, DecimalType) and isinstance(new, DecimalType):
        return old.scale == new.scale and old.precision < new.precision
    return False


def shape(field_type: IcebergType) -> str:
    """A type without its nested field ids, which may differ between the asset and the table."""
    if isinstance(field_type, StructType):
        inner = ", ".join(f"{f.name}: {shape(f.field_type)}{'' if f.required else '?'}" for f in field_type.fields)
        return f"struct<{inner}>"
    if isinstance(field_type, ListType):
        return f"list<{shape(field_type.element_type)}{'' if field_type.element_required else '?'}>"
    if isinstance(field_type, MapType):
        value = f"{shape(field_type.value_type)}{'' if field_type.value_required else '?'}"
        return f"map<{shape(field_type.key_type)}, {value}>"
    return str(field_type)


def diff_keys(recorded: tuple[str, ...] | None, key: tuple[str, ...]) -> tuple[Change, ...]:
    """A changed unique key; a table that records none (written outside ``cascade.run``) is not judged."""
    if recorded is None or recorded == key:
        return ()
    return (Change(ChangeKind.UNIQUE_KEY, "unique_key", _key_text(recorded), _key_text(key)),)


def _key_text(key: Sequence[str]) -> str:
    return "(" + ", ".join(repr(k) for k in key) + ("," if len(key) == 1 else "") + ")"


def describe_partition_spec(spec: PartitionSpec, schema: Schema) -> str:
    """A spec by column names and transforms (``day(ts), identity(station)``): ids differ across schemas."""
    if not spec.fields:
        return "unpartitioned"
    return ", ".join(f"{f.transform}({schema.find_column_name(f.source_id)})" for f in spec.fields)


def diff_partition_specs(table_spec: str, asset_spec: str) -> tuple[Change, ...]:
    if table_spec == asset_spec:
        return ()
    return (Change(ChangeKind.PARTITION_SPEC, "partition_spec", table_spec, asset_spec),)


# --- applying it -------------------------------------------------------------------------------------


def check_diff(diff: TableDiff, *, where: str, allow: Collection[Allow] = ()) -> None:
    """Raise :class:`SchemaEvolutionError` naming every breaking change ``allow`` does not cover."""
    refused = diff.refused(allow)
    if refused:
        raise SchemaEvolutionError(
            where,
            [f"{c.describe()}: {c.remedy(diff.asset)}" for c in refused],
            headline="the asset no longer fits its table",
        )


def evolve_table(
    table: Table, spec: AssetSpec, *, where: str, allow: Collection[Allow] = (), attempts: int = APPLY_ATTEMPTS
) -> tuple[Table, TableDiff]:
    """Bring ``table`` to the asset's definition: additive changes, and the breaking ones ``allow`` covers.

    Everything is checked first (breaking changes, key collisions); then schema, partition spec
    and recorded key change in one table commit, or not at all. Returns the refreshed table and
    the diff that was applied. A concurrent evolution of the same table is re-diffed, not fought.
    """
    allowed = frozenset(Allow(a) for a in allow)
    for _ in range(attempts):
        diff = diff_table(table, spec)
        check_diff(diff, where=where, allow=allowed)
        if not diff.changes:
            return table, diff
        heads: dict[str, int] = {}
        if any(c.kind == ChangeKind.UNIQUE_KEY for c in diff.changes):
            heads = branches(table)
            check_unique_under(table, spec.unique_key, where=where)
        try:
            commit_diff(table, spec, diff, checked_heads=heads)
        except CommitFailedException:
            table = table.refresh()
            continue
        return table.refresh(), diff
    raise MergeConflictError(
        f"{where}: concurrent changes to the table invalidated its schema evolution {attempts} times; try again"
    )


def commit_diff(table: Table, spec: AssetSpec, diff: TableDiff, *, checked_heads: Mapping[str, int]) -> None:
    """Apply ``diff`` (already checked) to ``table`` in one transaction.

    ``checked_heads`` are the branch heads whose rows were checked for a new key: the commit
    fails (and is re-planned) if any moved, so no write slips in between the check and the change.
    """
    wanted = {f.name: f for f in spec.table_schema.fields}
    transaction = table.transaction()
    schema_changes = [c for c in diff.changes if c.kind in ADDITIVE or c.kind == ChangeKind.REMOVE_COLUMN]
    if schema_changes:
        with transaction.update_schema() as update:
            for change in schema_changes:
                field = wanted.get(change.subject)
                if change.kind == ChangeKind.ADD_COLUMN and field is not None:
                    update.add_column(field.name, field.field_type, doc=field.doc)
                elif change.kind == ChangeKind.WIDEN_TYPE and field is not None:
                    update.update_column(field.name, field_type=field.field_type)
                elif change.kind == ChangeKind.MAKE_OPTIONAL:
                    update.make_column_optional(change.subject)
                elif change.kind == ChangeKind.REMOVE_COLUMN:
                    update.delete_column(change.subject)
    if any(c.kind == ChangeKind.PARTITION_SPEC for c in diff.changes):
        _evolve_partition_spec(transaction, table, spec)
    if any(c.kind == ChangeKind.UNIQUE_KEY for c in diff.changes):
        transaction.set_properties({UNIQUE_KEY_PROPERTY: ",".join(spec.unique_key)})
    require_ref_heads(transaction, checked_heads)
    transaction.commit_transaction()


def _evolve_partition_spec(transaction: Transaction, table: Table, spec: AssetSpec) -> None:
    """Make the asset's spec the table's default: fields it lacks removed, fields it adds added."""
    schema, asset_schema = table.schema(), spec.iceberg_schema
    stored = {(schema.find_field(f.source_id).name, str(f.transform)): f for f in table.spec().fields}
    wanted = {(asset_schema.find_field(f.source_id).name, str(f.transform)): f for f in spec.partition_spec.fields}
    with transaction.update_spec() as update:
        for key, field in stored.items():
            if key not in wanted:
                update.remove_field(field.name)
        for key, field in wanted.items():
            if key not in stored:
                update.add_field(key[0], field.transform, field.name)


def check_unique_under(table: Table, key: tuple[str, ...], *, where: str) -> None:
    """Refuse a new unique key while any branch holds rows that collide (or have a null) under it."""
    problems = []
    for branch, snapshot_id in sorted(branches(table).items()):
        colliding, null = collisions(table, snapshot_id, key)
        if colliding:
            problems.append(f"{colliding} stored row(s) on branch {branch!r} collide under unique_key {_key_text(key)}")
        if null:
            problems.append(f"{null} stored row(s) on branch {branch!r} have a null in unique_key {_key_text(key)}")
    if problems:
        raise SchemaEvolutionError(
            where,
            [*problems, "de-duplicate them (or choose a key that is unique), then apply again"],
            headline="the unique key cannot change",
        )


def collisions(table: Table, snapshot_id: int, key: tuple[str, ...]) -> tuple[int, int]:
    """Rows of a snapshot sharing their key with another row, and rows with a null key column."""
    missing = [k for k in key if k not in table.schema().column_names]
    rows: pa.Table = table.scan(
        snapshot_id=snapshot_id, selected_fields=tuple(k for k in key if k not in missing)
    ).to_arrow()
    if missing:  # a column being added by this change: every stored row reads it as null
        return 0, rows.num_rows
    null_mask = None
    for name in key:
        is_null = pc.is_null(rows.column(name))
        null_mask = is_null if null_mask is None else pc.or_(null_mask, is_null)
    null = int(pc.sum(null_mask).as_py() or 0) if null_mask is not None else 0
    keyed = rows.filter(pc.invert(null_mask)) if null else rows
    counts = keyed.group_by(list(key), use_threads=False).aggregate([([], "count_all")]).column("count_all")
    repeated = pc.filter(counts, pc.greater(counts, 1))
    return int(pc.sum(repeated).as_py() or 0), null


# --- for ``cascade schema``: the asset's own table, by configuration ----------------------------------


def load_asset_table(spec: AssetSpec, config: CascadeConfig) -> Table | None:
    """The asset's table (namespace after ``[namespaces]``), or ``None`` before its first run."""
    catalog = open_catalog(config)
    identifier = table_identifier(spec, config)
    if not catalog.table_exists(identifier):
        return None
    return catalog.load_table(identifier)


def diff_asset(spec: AssetSpec, config: CascadeConfig) -> TableDiff | None:
    """The asset's table against the asset; ``None`` when the table does not exist yet."""
    table = load_asset_table(spec, config)
    return None if table is None else diff_table(table, spec)


def apply_asset(spec: AssetSpec, config: CascadeConfig, allow: Collection[Allow] = ()) -> TableDiff | None:
    """Evolve the asset's table: additive changes and the breaking ones ``allow`` covers, or nothing.

    ``None`` when the table does not exist yet (its first run creates it as the asset says).
    """
    table = load_asset_table(spec, config)
    if table is None:
        return None
    where = f"asset {spec.name!r}, table {'.'.join(table_identifier(spec, config))}"
    return evolve_table(table, spec, where=where, allow=allow)[1]
