"""The registry's tables (sqlmodel). Only keyadmin.store imports this module.

Migrations in keyadmin/store/migrations must match these definitions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class UserRow(SQLModel, table=True):
    __tablename__ = "ka_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    display_name: str | None = None
    user_handle: bytes = Field(sa_column=Column(LargeBinary, unique=True, nullable=False))
    created_at: datetime


class PolicyVersionRow(SQLModel, table=True):
    __tablename__ = "ka_policy_version"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True, index=True)
    name: str
    path: str
    content: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime


class EvidenceRow(SQLModel, table=True):
    __tablename__ = "ka_evidence"

    id: int | None = Field(default=None, primary_key=True)
    attestation_object: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    client_data_json: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    evidence_json: str = Field(sa_column=Column(Text, nullable=False))
    decision_json: str = Field(sa_column=Column(Text, nullable=False))
    verified_at: datetime


class CredentialRow(SQLModel, table=True):
    __tablename__ = "ka_credential"

    id: int | None = Field(default=None, primary_key=True)
    credential_id: bytes = Field(sa_column=Column(LargeBinary, unique=True, nullable=False))
    user_id: int = Field(foreign_key="ka_user.id", index=True)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # COSE
    sign_count: int = 0
    aaguid: str = Field(index=True)
    transports: str = "[]"  # JSON list
    backup_eligible: bool = False
    backed_up: bool = False
    status: str = Field(default="active", index=True)
    status_reason: str | None = None
    nickname: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    updated_at: datetime
    evidence_id: int | None = Field(default=None, foreign_key="ka_evidence.id")
    policy_version_id: int | None = Field(default=None, foreign_key="ka_policy_version.id")
    metadata_no: int | None = None
    operator: str
    witness: str | None = None
    change_seq: int = Field(default=0, index=True)  # audit seq of the row's last change
    key_serial: str | None = Field(default=None, index=True)  # from enterprise attestation
    firmware: str | None = None  # getInfo firmwareVersion at enrolment


class KeyRow(SQLModel, table=True):
    """One physical key in the inventory (keyadmin.store.inventory)."""

    __tablename__ = "ka_key"

    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(unique=True)
    model: str | None = None
    aaguid: str | None = Field(default=None, index=True)
    batch: str | None = None
    location: str | None = None
    state: str = Field(index=True)
    user_id: int | None = Field(default=None, foreign_key="ka_user.id", index=True)
    firmware: str | None = None
    created_at: datetime
    updated_at: datetime
    change_seq: int = 0


class AuditRow(SQLModel, table=True):
    __tablename__ = "ka_audit"

    seq: int = Field(primary_key=True)
    at: datetime
    actor: str
    action: str = Field(index=True)
    subject: str | None = None
    details: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    prev_hash: str
    hash: str


class AuditHeadRow(SQLModel, table=True):
    """One row: the newest log entry. Appends lock it, so the chain never forks."""

    __tablename__ = "ka_audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str


class ChallengeRow(SQLModel, table=True):
    """A step-up challenge: single use, bound to an action, with an expiry."""

    __tablename__ = "ka_challenge"

    id: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="ka_user.id", index=True)
    rp_id: str
    origin: str
    action: str = Field(sa_column=Column(Text, nullable=False))
    action_hash: str
    challenge: bytes = Field(sa_column=Column(LargeBinary, unique=True, nullable=False))
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    outcome: str | None = None


class StepUpFailureRow(SQLModel, table=True):
    __tablename__ = "ka_stepup_failure"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="ka_user.id", index=True)
    credential_id: bytes | None = Field(default=None, sa_column=Column(LargeBinary, index=True))
    at: datetime
    reason: str


class SyncStateRow(SQLModel, table=True):
    __tablename__ = "ka_sync_state"

    target: str = Field(primary_key=True)
    target_label: str
    last_seq: int = 0
    last_run_at: datetime | None = None
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class OperatorRoleRow(SQLModel, table=True):
    """One role of one operator (a registry user); see keyadmin.store.operators."""

    __tablename__ = "ka_operator_role"
    __table_args__ = (UniqueConstraint("user_id", "role", name="uq_ka_operator_role_user_role"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="ka_user.id", index=True)
    role: str
    granted_at: datetime
    granted_seq: int  # the audit row that granted it


class OperatorSessionRow(SQLModel, table=True):
    """A short operator session: only the SHA-256 of its secret is stored."""

    __tablename__ = "ka_operator_session"

    id: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="ka_user.id", index=True)
    credential_id: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    secret_sha256: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    login_seq: int  # the audit row of the login (its assertion is the evidence)
