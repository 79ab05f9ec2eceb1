"""Mon espace personnel (the establishment issue fills it in)."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user, login_required

from authserver.accounts.blueprint import bp


@bp.get("/espace")
@login_required
def espace() -> str:
    return render_template("accounts/espace.html", user=current_user)
