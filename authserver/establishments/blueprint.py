from __future__ import annotations

from flask import Blueprint

bp = Blueprint("establishments", __name__)
