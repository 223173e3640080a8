"""PostgreSQL: log rows take their seq from a sequence, and are chained by a separate seal.

Revision ID: 0005
Revises: 0004

Writers no longer hold the head row's lock across their commit (store/audit.py: a row is
inserted unsealed with ``nextval('ka_audit_seq_next')`` and sealed right after). The sequence
starts after the newest row. SQLite keeps taking the head's seq + 1 under its one write lock:
nothing changes there.
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE ka_audit_seq_next AS integer MINVALUE 1 OWNED BY ka_audit.seq")
    op.execute(
        "SELECT setval('ka_audit_seq_next', GREATEST(1, (SELECT coalesce(max(seq), 0) FROM "
        "ka_audit), (SELECT seq FROM ka_audit_head WHERE id = 1)), EXISTS (SELECT 1 FROM "
        "ka_audit))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE ka_audit_seq_next")
