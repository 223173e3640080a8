"""Alembic environment: keyadmin runs migrations programmatically (keyadmin.store.db)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("keyadmin migrations run through keyadmin.store.db.get_engine()")

context.configure(connection=connection, version_table="ka_alembic_version")
with context.begin_transaction():
    context.run_migrations()
