"""Operators: roles of registry users, and short operator sessions.

Revision ID: 0003
Revises: 0002

An operator is a registry user with at least one role in ``ka_operator_role`` (and an active
credential of their own, checked when they act). ``ka_operator_session`` keeps only the
SHA-256 of a session's secret; the secret itself lives in a 0600 file in keyadmin's data
directory. An existing registry upgrades with no operator: it stays in lab mode until
``keyadmin operator bootstrap``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "ka_operator_role",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), nullable=False, index=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("user_id", "role", name="uq_ka_operator_role_user_role"),
    )
    op.create_table(
        "ka_operator_session",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), nullable=False, index=True),
        sa.Column("credential_id", sa.LargeBinary, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("login_seq", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ka_operator_session")
    op.drop_table("ka_operator_role")
