"""Mandates become invitations the representative accepts: the principal names a BSN, the row keeps
its pseudonym, and the mandate is in force only once the person with that BSN has accepted it.

Before, appointing answered at once whether the BSN had a vault in the municipality (an
existence oracle for any logged-in resident). Mandates given before this revision were in force
without acceptance; they keep that (``accepted_at`` = ``created_at``), with the pseudonym of the
representative they named.

Plain SQLAlchemy (and the vault's column type) only: this file must not change when the
``kluis.web`` package does. ``representative_pseudonym`` is NULL only for a mandate of a
representative erased before this revision (stopped here).

Revision ID: 0008_mandate_acceptance
Revises: 0007_verification_since
"""

import sqlalchemy as sa
from alembic import op

from vault.models import UtcDateTime

revision = "0008_mandate_acceptance"
down_revision = "0007_verification_since"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mandate") as batch:
        batch.add_column(sa.Column("representative_pseudonym", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("accepted_at", UtcDateTime(), nullable=True))
        batch.alter_column("representative_id", existing_type=sa.String(32), nullable=True)
    op.execute(
        "UPDATE mandate SET accepted_at = created_at, representative_pseudonym = "
        "(SELECT resident.bsn_pseudonym FROM resident WHERE resident.id = mandate.representative_id)"
    )
    # An erased representative has no pseudonym left: their mandate stays without one, stopped.
    op.execute(
        "UPDATE mandate SET revoked_at = COALESCE(revoked_at, created_at) "
        "WHERE representative_pseudonym IS NULL"
    )
    op.create_index("ix_mandate_invitation", "mandate", ["tenant_id", "representative_pseudonym"])


def downgrade() -> None:
    op.execute("DELETE FROM mandate WHERE accepted_at IS NULL")
    op.drop_index("ix_mandate_invitation", "mandate")
    with op.batch_alter_table("mandate") as batch:
        batch.alter_column("representative_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("accepted_at")
        batch.drop_column("representative_pseudonym")
