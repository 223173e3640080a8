"""Change tracking for sync, step-up challenges and failures, sync state.

Revision ID: 0002
Revises: 0001

``ka_credential.change_seq`` is the audit-log sequence number of the last change to the row
(the log is strictly ordered, so "changed since the last sync" is ``change_seq > watermark``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("ka_credential") as batch:
        batch.add_column(sa.Column("change_seq", sa.Integer, nullable=False, server_default="0"))
        batch.create_index("ix_ka_credential_change_seq", ["change_seq"])
    op.create_table(
        "ka_challenge",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), nullable=False, index=True),
        sa.Column("rp_id", sa.String, nullable=False),
        sa.Column("origin", sa.String, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("action_hash", sa.String(64), nullable=False),
        sa.Column("challenge", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String),
    )
    op.create_table(
        "ka_stepup_failure",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), nullable=False, index=True),
        sa.Column("credential_id", sa.LargeBinary, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String, nullable=False),
    )
    op.create_table(
        "ka_sync_state",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("target_label", sa.String, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("ka_sync_state")
    op.drop_table("ka_stepup_failure")
    op.drop_table("ka_challenge")
    with op.batch_alter_table("ka_credential") as batch:
        batch.drop_index("ix_ka_credential_change_seq")
        batch.drop_column("change_seq")
