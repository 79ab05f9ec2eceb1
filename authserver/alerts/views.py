"""Public security pages (later: the security console)."""

from __future__ import annotations

from flask import Blueprint, render_template

from authserver.alerts.devices import set_device_cookie

bp = Blueprint("alerts", __name__)
bp.after_app_request(set_device_cookie)


@bp.get("/securite")
def security_info() -> str:
    return render_template("alerts/security_info.html")
