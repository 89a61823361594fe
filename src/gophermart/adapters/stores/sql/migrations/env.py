"""Alembic environment: run by gophermart on a connection it hands in (``migrate``), or
offline for ``gophermart migrate --sql`` (the dialect handed in, the SQL printed)."""

from alembic import context

from gophermart.adapters.stores.sql.schema import VERSION_TABLE, metadata

attributes = context.config.attributes
#: PostgreSQL's schema of ours, when configured (the transaction's search_path is it).
schema = attributes.get("schema")
if context.is_offline_mode():
    context.configure(
        dialect_name=attributes["dialect"],
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=False,  # offline there is no table to copy: plain ALTERs
        version_table=VERSION_TABLE,
        version_table_schema=schema,
    )
else:
    connection = attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through gophermart (it passes the connection)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table=VERSION_TABLE,  # beside a shop's own alembic_version
        version_table_schema=schema,
    )
with context.begin_transaction():
    context.run_migrations()
