"""``cascade.naming``: the shortcut that spares the decorator an import of dlt agrees with dlt."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.naming import PLAINLY_NORMALIZED, is_normalized, normalized_name


@settings(deadline=None)  # the first call imports dlt
@given(st.from_regex(PLAINLY_NORMALIZED, fullmatch=True))
def test_a_plainly_normalized_name_is_what_dlt_makes_of_it(name: str) -> None:
    assert normalized_name(name) == name


@settings(deadline=None)
@given(st.text(alphabet="aZ_9 -.é", min_size=1, max_size=8))
def test_is_normalized_agrees_with_dlt(name: str) -> None:
    try:
        unchanged = normalized_name(name) == name
    except ValueError:  # dlt refuses it: not a name it stages
        unchanged = False
    assert is_normalized(name) == unchanged
