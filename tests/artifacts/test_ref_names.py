"""Ref names: the one-match fast path accepts only names the full checks accept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinrun.artifacts import refs
from pinrun.artifacts.refs import MAX_REF_LENGTH, ref_name_problem, validate_ref_name
from pinrun.errors import InputError

#: Characters that matter to a ref name's rules, and some that do not.
_ALPHABET = st.sampled_from([*"az09_-./ é\x00\t", "\u2028", "\ud800"])


@settings(max_examples=500)
@given(st.lists(_ALPHABET, max_size=12).map("".join))
def test_every_name_the_fast_path_takes_passes_the_full_checks(name: str) -> None:
    """A name the plain-name pattern matches has no problem, and is returned as it is."""
    if refs._PLAIN_NAME.fullmatch(name):
        assert ref_name_problem(name) is None
    if ref_name_problem(name) is None:
        assert validate_ref_name(name) == name
    else:
        with pytest.raises(InputError, match="is not a valid ref name"):
            validate_ref_name(name)


@pytest.mark.parametrize("name", ["", "/runs", "runs/", "runs//a", "runs/./a", "runs/..",
                                  "a b", "a\tb", "x" * (MAX_REF_LENGTH + 1)])
def test_bad_names_are_refused(name: str) -> None:
    """Empty parts, dot parts, spaces, control characters and long names are refused."""
    with pytest.raises(InputError, match="is not a valid ref name"):
        validate_ref_name(name)


@pytest.mark.parametrize("name", ["runs/20261123T013055012-4f1a2b", "tags/release-1.2",
                                  "a/.hidden", "é/ü", "x" * MAX_REF_LENGTH])
def test_good_names_pass(name: str) -> None:
    """Run refs, tags, dotted parts and non-ASCII names are ref names."""
    assert validate_ref_name(name) == name
