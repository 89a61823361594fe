"""SQL persistence (SQLAlchemy 2 Core, async): SQLite via aiosqlite, PostgreSQL via asyncpg."""
