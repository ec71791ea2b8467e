"""Names: of an asset's table, of a branch (and which branch a run writes to), and of the columns
dlt will stage.

Light on purpose: the decorator, ``cascade list`` and ``cascade status`` check names without
loading dlt or the run's machinery.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cascade.errors import ConfigurationError
from cascade.spec import IDENTIFIER

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cascade.config import CascadeConfig
    from cascade.spec import AssetSpec

BRANCH_NAME_MAX = 128
MAIN = "main"
BRANCH_TAG = "cascade/branch"  # the run tag that names the branch a run writes to
# A run tag ``cascade/snapshot/<key>`` becomes snapshot summary property ``<key>`` (orchestrator run ids).
SNAPSHOT_TAG_PREFIX = "cascade/snapshot/"
# A name dlt's ``snake_case`` naming leaves as it is: lower-case ASCII, digits and single
# underscores, not starting with a digit nor ending with an underscore.
PLAINLY_NORMALIZED = re.compile(r"_?[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def table_identifier(spec: AssetSpec, config: CascadeConfig) -> tuple[str, str]:
    """The asset's ``(namespace, table)``, checked so that no name escapes its namespace or folder."""
    namespace = config.namespace_for(spec.group, spec.namespace)
    for part, what in ((namespace, "namespace"), (spec.table_name, "table name")):
        if not IDENTIFIER.match(part):
            raise ConfigurationError(
                f"asset {spec.name!r}: {what} {part!r} must be lower-case letters, digits and underscores"
            )
    return namespace, spec.table_name


# ASCII letters, digits and ``._-``, in parts joined by single ``/``, no part starting with ``.``
# (so no ``.`` or ``..`` part) or ``-``: nothing invisible, nothing that looks like another name,
# nothing a path or an option could misread.
BRANCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
BRANCH_RULE = (
    "letters, digits and . _ - /, at most 128 characters, with no '..', no part starting with '.' or '-', "
    "and no leading, trailing or double '/'"
)


STAGING_BRANCH_PREFIX = "cascade-merge-"
"""Chunked merges' private staging branches (dropped once abandoned): no user branch is named so."""


def check_branch_name(branch: str) -> str:
    """A branch name from the safe set (:data:`BRANCH_RULE`); anything else is a usage error."""
    if len(branch) > BRANCH_NAME_MAX or ".." in branch or not BRANCH_NAME.fullmatch(branch):
        raise ConfigurationError(f"branch {branch!r} is not a valid branch name: use {BRANCH_RULE}")
    if branch.startswith(STAGING_BRANCH_PREFIX):
        raise ConfigurationError(
            f"branch {branch!r}: names starting with {STAGING_BRANCH_PREFIX!r} are Cascade's staging branches "
            "(dropped when a day old); choose another name"
        )
    return branch


def normalized_name(name: str) -> str:
    """The column name dlt gives a source field (dlt's default ``snake_case`` naming)."""
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    return str(NamingConvention().normalize_identifier(name))


def is_normalized(name: str) -> bool:
    """Whether dlt stages a source field of this name under the same name (only odd names load dlt)."""
    if PLAINLY_NORMALIZED.fullmatch(name):
        return True
    try:
        return normalized_name(name) == name
    except ValueError:  # dlt refuses the name outright (empty once stripped)
        return False


def resolve_branch(explicit: str | None, tags: Mapping[str, str], config: CascadeConfig) -> str:
    """Explicit argument, else the run tag ``cascade/branch``, else ``CASCADE_BRANCH``/config, else main."""
    return check_branch_name(explicit or tags.get(BRANCH_TAG) or config.branch or MAIN)
