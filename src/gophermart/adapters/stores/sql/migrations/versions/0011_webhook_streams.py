"""Webhook streams (issue 18): who streams an endpoint's events, and until when.

The worker process holding an endpoint's stream POSTs its events straight from the
feed and records each delivery once, as its first try left it
(application/webhook_delivery.py). ``stream_owner`` names that process, ``stream_until``
ends its lease unless it keeps it. Two nullable columns: nothing existing is rewritten.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_W = "gophermart_webhooks"


def upgrade() -> None:
    op.add_column(_W, sa.Column("stream_owner", sa.String(64), nullable=True))
    op.add_column(_W, sa.Column("stream_until", UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(_W) as batch:
        batch.drop_column("stream_until")
        batch.drop_column("stream_owner")
