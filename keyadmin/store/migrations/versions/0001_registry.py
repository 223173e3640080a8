"""The registry: users, policy versions, evidence, credentials, the audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "ka_user",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True, index=True),
        sa.Column("display_name", sa.String),
        sa.Column("user_handle", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ka_policy_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String, nullable=False, unique=True, index=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ka_evidence",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("attestation_object", sa.LargeBinary, nullable=False),
        sa.Column("client_data_json", sa.LargeBinary, nullable=False),
        sa.Column("evidence_json", sa.Text, nullable=False),
        sa.Column("decision_json", sa.Text, nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ka_credential",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("credential_id", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), nullable=False, index=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("aaguid", sa.String, nullable=False, index=True),
        sa.Column("transports", sa.String, nullable=False, server_default="[]"),
        sa.Column("backup_eligible", sa.Boolean, nullable=False),
        sa.Column("backed_up", sa.Boolean, nullable=False),
        sa.Column("status", sa.String, nullable=False, index=True),
        sa.Column("status_reason", sa.String),
        sa.Column("nickname", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence_id", sa.Integer, sa.ForeignKey("ka_evidence.id")),
        sa.Column("policy_version_id", sa.Integer, sa.ForeignKey("ka_policy_version.id")),
        sa.Column("metadata_no", sa.Integer),
        sa.Column("operator", sa.String, nullable=False),
        sa.Column("witness", sa.String),
    )
    op.create_table(
        "ka_audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False, index=True),
        sa.Column("subject", sa.String),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )
    op.create_table(
        "ka_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )
    op.execute("INSERT INTO ka_audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")


def downgrade() -> None:
    for table in (
        "ka_audit_head",
        "ka_audit",
        "ka_credential",
        "ka_evidence",
        "ka_policy_version",
        "ka_user",
    ):
        op.drop_table(table)
