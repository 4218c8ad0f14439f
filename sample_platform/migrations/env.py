"""Alembic environment for the sample platform's schema.

Run through `controlplane platform migrate` (or `sample_platform.db.migrate(engine)`), which hands the
engine in; the URL is never read from an ini file.
"""

from alembic import context
from sqlmodel import SQLModel

import sample_platform.models  # noqa: F401  (registers every table on SQLModel.metadata)

target_metadata = SQLModel.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `controlplane platform migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
