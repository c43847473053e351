"""API tokens get scopes, an expiry and a revocation time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Tokens created before this revision could do everything, so they keep every scope; they
never expire and are not revoked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # service.store.UtcDateTime stores this type
ALL_SCOPES = '["read", "submit", "admin"]'


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column(
                "scopes", sa.JSON(), nullable=False, server_default=sa.text(f"'{ALL_SCOPES}'")
            )
        )
        batch.add_column(sa.Column("expires", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("revoked", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("scopes", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked")
        batch.drop_column("expires")
        batch.drop_column("scopes")
