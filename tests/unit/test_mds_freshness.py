"""The freshness gate and the signed-metadata demand."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from keyadmin.errors import ExitCode
from keyadmin.mds import errors as E
from keyadmin.mds.freshness import (
    DEFAULT_GRACE,
    configured_grace,
    evaluate,
    require_fresh,
    require_signed_metadata,
)


@dataclass(frozen=True)
class Snap:
    next_update: str = "2026-11-01"
    signed: bool = True
    no: int = 291
    source: str = "https://mds3.fidoalliance.org/"


def at(day: int, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, 12, tzinfo=dt.UTC)


def test_fresh_before_next_update_and_inside_grace() -> None:
    assert require_fresh(Snap(), at(20, 10)).fresh
    r = require_fresh(Snap(), at(7), dt.timedelta(days=7))
    assert r.fresh and r.deadline == "2026-11-08T00:00:00+00:00" and not r.override_used


def test_stale_after_grace_refuses_with_metadata_exit_code() -> None:
    with pytest.raises(E.MetadataStale) as ei:
        require_fresh(Snap(), at(22), dt.timedelta(days=7))
    assert ei.value.exit_code == ExitCode.METADATA
    assert ei.value.data["overdue_days"] == 14
    assert "override" in (ei.value.hint or "")


def test_override_lets_stale_metadata_through_and_says_so() -> None:
    r = require_fresh(Snap(), at(22), dt.timedelta(days=7), override=True)
    assert not r.fresh and r.override_used and r.overdue_days == 14


def test_override_is_not_reported_when_not_needed() -> None:
    assert not require_fresh(Snap(), at(2), override=True).override_used


def test_grace_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configured_grace() == DEFAULT_GRACE
    monkeypatch.setenv("KEYADMIN_MDS_GRACE_DAYS", "30")
    assert require_fresh(Snap(), at(22), configured_grace()).fresh
    monkeypatch.setenv("KEYADMIN_MDS_GRACE_DAYS", "soon")
    from keyadmin.errors import ConfigError

    with pytest.raises(ConfigError):
        configured_grace()


def test_unsigned_metadata_is_refused_when_the_policy_demands_signatures() -> None:
    with pytest.raises(E.UnsignedMetadataRefused):
        require_fresh(Snap(signed=False), at(20, 10), require_signed=True)
    with pytest.raises(E.UnsignedMetadataRefused):
        require_signed_metadata(Snap(signed=False))
    assert evaluate(Snap(signed=False), at(20, 10), DEFAULT_GRACE).fresh


def test_no_metadata_at_all() -> None:
    with pytest.raises(E.MetadataMissing):
        require_fresh(None, at(1))
