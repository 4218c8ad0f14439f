"""Alembic environment for the audit log (run through `audit.schema.migrate_audit`)."""

from alembic import context

from audit.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run audit migrations through audit.schema.migrate_audit, which supplies the connection")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="alembic_version_audit",
)
with context.begin_transaction():
    context.run_migrations()
