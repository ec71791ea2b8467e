"""Iceberg schemas and partitioning of the ``events`` and ``repos`` tables (Pandera models: ``checks``).

GitHub's nested JSON is mapped to columns on purpose (see ``rows.py``); nothing is kept as a
JSON string.
"""

from __future__ import annotations

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import BooleanType, DateType, LongType, NestedField, StringType, TimestamptzType

EVENTS_SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=False, doc="GitHub event id"),
    NestedField(2, "type", StringType(), required=False, doc="Event type, e.g. PushEvent"),
    NestedField(3, "created_at", TimestamptzType(), required=False, doc="When the event happened (UTC)"),
    NestedField(4, "feed_user", StringType(), required=False, doc="The configured user whose feed listed it"),
    NestedField(5, "actor_id", LongType(), required=False, doc="actor.id"),
    NestedField(6, "actor_login", StringType(), required=False, doc="actor.login"),
    NestedField(7, "repo_id", LongType(), required=False, doc="repo.id"),
    NestedField(8, "repo_name", StringType(), required=False, doc="repo.name (owner/name)"),
    NestedField(9, "org_login", StringType(), required=False, doc="org.login, when the repo is an org's"),
    NestedField(10, "public", BooleanType(), required=False),
    NestedField(11, "action", StringType(), required=False, doc="payload.action (opened, closed, ...)"),
    NestedField(12, "ref", StringType(), required=False, doc="payload.ref (pushes, creates, deletes)"),
    NestedField(13, "ref_type", StringType(), required=False, doc="payload.ref_type (branch, tag, repository)"),
    NestedField(14, "push_size", LongType(), required=False, doc="payload.size: commits in a push"),
    NestedField(15, "number", LongType(), required=False, doc="payload.number or the issue/PR number"),
)

EVENTS_PARTITIONING = PartitionSpec(
    PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="created_at_day")
)

REPOS_SCHEMA = Schema(
    NestedField(1, "repository", StringType(), required=False, doc="owner/name as configured"),
    NestedField(2, "snapshot_date", DateType(), required=False, doc="The partition date the figures are for"),
    NestedField(3, "repo_id", LongType(), required=False),
    NestedField(4, "full_name", StringType(), required=False, doc="owner/name as GitHub reports it"),
    NestedField(5, "owner_login", StringType(), required=False, doc="owner.login"),
    NestedField(6, "stars", LongType(), required=False, doc="stargazers_count"),
    NestedField(7, "forks", LongType(), required=False, doc="forks_count"),
    NestedField(8, "watchers", LongType(), required=False, doc="subscribers_count (GitHub's watchers_count is stars)"),
    NestedField(9, "open_issues", LongType(), required=False, doc="open_issues_count (issues and PRs)"),
    NestedField(10, "size_kb", LongType(), required=False, doc="size"),
    NestedField(11, "default_branch", StringType(), required=False),
    NestedField(12, "language", StringType(), required=False),
    NestedField(13, "license", StringType(), required=False, doc="license.spdx_id"),
    NestedField(14, "archived", BooleanType(), required=False),
    NestedField(15, "pushed_at", TimestamptzType(), required=False),
    NestedField(16, "updated_at", TimestamptzType(), required=False),
    NestedField(17, "fetched_at", TimestamptzType(), required=False, doc="When Cascade read the figures"),
)

REPOS_PARTITIONING = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="snapshot_date")
)
