"""The search spaces package: finding a space by name."""

import pytest

from results.cli import UsageError
from search_spaces import SPACES, get_space


def test_unknown_space_is_a_usage_error_listing_the_known_ones():
    """An unknown name is one UsageError line naming it and every known space; a known one is found."""
    with pytest.raises(UsageError) as caught:
        get_space("nope")
    assert str(caught.value) == f"unknown space 'nope'; known spaces: {', '.join(SPACES)}"
    assert get_space("sgd_vs_adam").name == "sgd_vs_adam"
