"""ChallengeCap: the estimate of outstanding challenges never misses one this node stored, however
its stores interleave with a sweep's count."""

from __future__ import annotations

import pytest

from roomserver.errors import RateLimited
from roomserver.identity.purge import ChallengeCap


def test_refuses_at_the_cap_and_counts_only_what_was_stored() -> None:
    cap = ChallengeCap(2, retry_after=7)
    with cap.issuing():
        pass
    with pytest.raises(OSError), cap.issuing():  # a store that failed counts for nothing
        raise OSError("database down")
    with cap.issuing():
        pass
    with pytest.raises(RateLimited) as refused, cap.issuing():
        pass
    assert refused.value.code == "challenges_exhausted" and refused.value.retry_after == 7
    assert cap.estimate == 2


def test_a_store_in_flight_while_the_sweep_counts_is_not_lost() -> None:
    cap = ChallengeCap(3, retry_after=1)
    with cap.issuing():  # stored, then the sweep begins
        pass
    issued_before = cap.issued
    with cap.issuing():  # stored after the sweep began: the count may or may not include it
        pass
    cap.observe(1, issued_before=issued_before)  # the count saw only the first
    assert cap.estimate == 2
    with cap.issuing():
        pass
    with pytest.raises(RateLimited), cap.issuing():
        pass


def test_a_sweep_that_finds_fewer_makes_room() -> None:
    cap = ChallengeCap(1, retry_after=1)
    with cap.issuing():
        pass
    issued_before = cap.issued
    cap.observe(0, issued_before=issued_before)  # it expired and the sweep deleted it
    with cap.issuing():
        pass
    assert cap.estimate == 1


def test_a_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ChallengeCap(0, retry_after=1)
