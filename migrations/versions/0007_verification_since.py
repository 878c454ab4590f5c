"""Verification runs remember where their walk started: 0 for a full walk of the log, else the tree
size of the signed checkpoint an incremental walk started from (``audit.verify.verify_log``).

Plain SQLAlchemy only: this file must not change when the ``kluis.console`` package does. Rows of
earlier runs were all full walks, which the default says.

Revision ID: 0007_verification_since
Revises: 0006_audit_principal
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_verification_since"
down_revision = "0006_audit_principal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "console_verification",
        sa.Column("since_size", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    with op.batch_alter_table("console_verification") as batch:
        batch.drop_column("since_size")
