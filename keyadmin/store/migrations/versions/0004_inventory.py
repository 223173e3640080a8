"""The physical key: its serial and firmware on each credential, and the key inventory.

Revision ID: 0004
Revises: 0003

``ka_credential.key_serial`` is the serial read from an enterprise attestation (a verified
chain's id-fido-gen-ce-sernum), ``firmware`` the key's getInfo firmwareVersion at enrolment.
``ka_key`` is the inventory (keyadmin keys import): one row per physical key, with its state
(in-stock, issued, lost, returned, destroyed) and the user it is issued to; every change is
an audit row (``change_seq``). Existing credentials upgrade with no serial and no firmware.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("ka_credential") as batch:
        batch.add_column(sa.Column("key_serial", sa.String(128)))
        batch.add_column(sa.Column("firmware", sa.String(32)))
        batch.create_index("ix_ka_credential_key_serial", ["key_serial"])
    op.create_table(
        "ka_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("serial", sa.String(128), nullable=False, unique=True),
        sa.Column("model", sa.String(200)),
        sa.Column("aaguid", sa.String(36), index=True),
        sa.Column("batch", sa.String(200)),
        sa.Column("location", sa.String(200)),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("ka_user.id"), index=True),
        sa.Column("firmware", sa.String(32)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change_seq", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("ka_key")
    with op.batch_alter_table("ka_credential") as batch:
        batch.drop_index("ix_ka_credential_key_serial")
        batch.drop_column("firmware")
        batch.drop_column("key_serial")
