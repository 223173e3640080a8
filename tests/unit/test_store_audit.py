"""The registry's tamper-evident log on SQLite: appends chain; edits, deletions, inserts and moves
are each found and the first bad row is named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from keyadmin.store import audit
from keyadmin.store.db import get_engine, transaction


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    for i in range(1, 6):
        with transaction(url) as s:
            audit.append(s, actor="op", action="test.event", subject=f"u{i}", details={"i": i})
    return url


def _verify(url: str) -> audit.LogVerification:
    with transaction(url) as s:
        return audit.verify(s)


def _sql(url: str, statement: str) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text(statement))


def test_registry_file_is_private(tmp_path, db) -> None:
    assert oct((tmp_path / "registry.db").stat().st_mode & 0o777) == "0o600"


def test_intact_log_verifies(db) -> None:
    result = _verify(db)
    assert result.ok and result.rows_checked == 5 and result.head_seq == 5
    with transaction(db) as s:
        rows = audit.entries(s)
    assert [r.details["i"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1].hash != rows[0].hash


def test_edited_row_is_found(db) -> None:
    _sql(db, "UPDATE ka_audit SET subject = 'mallory' WHERE seq = 3")
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 3 and "edited" in (result.problem or "")


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        ("UPDATE ka_audit SET hash = 'é' WHERE seq = 2", "edited"),
        ("UPDATE ka_audit SET prev_hash = 'ü' WHERE seq = 2", "does not follow"),
        ("UPDATE ka_audit SET at = 'yesterday' WHERE seq = 2", "edited"),
        ("UPDATE ka_audit SET seq = 2, hash = 42 WHERE seq = 2", "edited"),
    ],
)
def test_edits_that_leave_odd_values_are_named(db, edit: str, what: str) -> None:
    """Found by review: a non-ASCII hash made verify raise instead of naming the row."""
    _sql(db, edit)
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 2 and what in (result.problem or "")


def test_edited_head_hash_is_found(db) -> None:
    _sql(db, "UPDATE ka_audit_head SET hash = 'ß'")
    result = _verify(db)
    assert not result.ok and "head" in (result.problem or "")


def test_deleted_row_is_found(db) -> None:
    _sql(db, "DELETE FROM ka_audit WHERE seq = 2")
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 2 and "missing" in (result.problem or "")


def test_deleted_tail_is_found_by_the_head(db) -> None:
    _sql(db, "DELETE FROM ka_audit WHERE seq = 5")
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 5 and "head" in (result.problem or "")


def test_reordered_rows_are_found(db) -> None:
    # swap the contents of rows 2 and 4, keeping each row's own hash consistent-looking
    _sql(db, "UPDATE ka_audit SET seq = 100 WHERE seq = 2")
    _sql(db, "UPDATE ka_audit SET seq = 2 WHERE seq = 4")
    _sql(db, "UPDATE ka_audit SET seq = 4 WHERE seq = 100")
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 2


def test_inserted_row_is_found(db) -> None:
    # a forged row 6 whose hash is computed correctly but chained to a made-up predecessor,
    # then the head moved to it: the chain still breaks at 6
    from datetime import UTC, datetime

    forged_prev = "f" * 64
    at = datetime.now(UTC)
    digest = audit.row_hash(forged_prev, 6, at, "mallory", "enrol.approved", "x", "{}")
    _sql(
        db,
        "INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash) "
        f"VALUES (6, '{at.replace(tzinfo=None).isoformat(sep=' ')}', 'mallory', "
        f"'enrol.approved', 'x', '{{}}', '{forged_prev}', '{digest}')",
    )
    _sql(db, f"UPDATE ka_audit_head SET seq = 6, hash = '{digest}'")
    result = _verify(db)
    assert not result.ok and result.first_bad_seq == 6 and "inserted" in (result.problem or "")


def test_rolled_back_transaction_leaves_no_row(db) -> None:
    with pytest.raises(RuntimeError), transaction(db) as s:
        audit.append(s, actor="op", action="test.event", subject="ghost", details={})
        raise RuntimeError("the caller failed after appending")
    result = _verify(db)
    assert result.ok and result.rows_checked == 5


_text = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**62),
    at=_text,
    actor=_text,
    action=_text,
    subject=st.none() | _text,
    details=_text,
)
def test_fast_row_canonical_is_json_dumps(seq, at, actor, action, subject, details) -> None:
    """The hash input built without a dict is exactly the canonical JSON of the row."""
    fields = {
        "seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
        "details": details,
    }  # fmt: skip
    assert audit._canonical_row(seq, at, actor, action, subject, details) == audit._canonical(
        fields
    )


def test_large_registry_ids_are_found_by_keyadmins_own_calls(tmp_path) -> None:
    """Found by review: from id 10,000,000 on, str(id) was read as a hex prefix, so a
    quarantine by keyadmin's own code failed with NotFound (and was rolled back)."""
    from sqlmodel import select

    from keyadmin.store import registry
    from keyadmin.store.models import CredentialRow

    url = f"sqlite:///{tmp_path / 'big.db'}"
    with transaction(url) as s:
        user = registry.get_or_create_user(s, "alice")
        pid = registry.record_policy(s, sha256="ab" * 32, name="p", path="p", content="")
        registry.add_credential(
            s, user=user, credential_id=b"\x01" * 16, public_key_cose=b"\xa0", sign_count=0,
            aaguid="00000000-0000-0000-0000-000000000000", transports=[], backup_eligible=False,
            backed_up=False, nickname=None, evidence={}, decision={}, attestation_object=b"",
            client_data_json=b"", policy_version_id=pid, metadata_no=None, operator="t",
            witness=None,
        )  # fmt: skip
    _sql(url, "UPDATE ka_credential SET id = 12345678")
    with transaction(url) as s:
        changed = registry.change_status(s, 12345678, "quarantine", reason="test", actor="t")
        assert changed.id == 12345678 and changed.status == "quarantined"
        assert registry.get_credential(s, "#12345678").status == "quarantined"
        assert s.exec(select(CredentialRow.status)).one() == "quarantined"
