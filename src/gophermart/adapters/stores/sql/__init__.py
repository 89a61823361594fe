"""What the two SQL stores share: the schema, the statements (SQLAlchemy Core), the
repositories over a session, the cold paths, migrations."""
