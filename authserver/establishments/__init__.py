"""Establishment (SIRET), memberships, certification and the espace personnel."""

from __future__ import annotations

from flask import Flask

DIRECTORY_KEY = "authserver.directory"
IDENTITY_KEY = "authserver.identity"


def init_app(app: Flask) -> None:
    from authserver.establishments import (
        views_certification,
        views_collaborators,
        views_counselor,
        views_espace,
        views_establishment,
    )
    from authserver.establishments.blueprint import bp
    from authserver.establishments.directory import make_directory
    from authserver.establishments.identity import make_verifier

    settings = app.config["AUTHSERVER"]
    app.extensions[DIRECTORY_KEY] = make_directory(
        settings.directory, api_key=settings.sirene_api_key, base_url=settings.directory_url
    )
    app.extensions[IDENTITY_KEY] = make_verifier(settings)
    del (
        views_certification,
        views_collaborators,
        views_counselor,
        views_espace,
        views_establishment,
    )  # imported for their routes
    app.register_blueprint(bp)
