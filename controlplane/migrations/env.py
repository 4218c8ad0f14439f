"""Alembic environment for the control plane's store (`controlplane.store`).

Run through `controlplane.store.migrate_store(engine)`, which hands the connection in.
"""

from alembic import context

from controlplane.store import StoreModel

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run store migrations through controlplane.store.migrate_store, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=StoreModel.metadata,
    # Its own version table: the store may share a database with the platform without confusion.
    version_table="alembic_version_store",
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
