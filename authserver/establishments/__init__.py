"""Establishment (SIRET), memberships, certification and the espace personnel."""

from __future__ import annotations

from flask import Flask

DIRECTORY_KEY = "authserver.directory"
IDENTITY_KEY = "authserver.identity"
AGENCIES_KEY = "authserver.agencies"
SERVICES_KEY = "authserver.portal_services"


def init_app(app: Flask) -> None:
    from authserver.config import ConfigError
    from authserver.establishments import (
        views_certification,
        views_collaborators,
        views_counselor,
        views_espace,
        views_establishment,
        views_services,
    )
    from authserver.establishments.agencies import AgencyContact, load_agency_table
    from authserver.establishments.blueprint import bp
    from authserver.establishments.directory import make_directory
    from authserver.establishments.identity import make_verifier
    from authserver.establishments.portal_services import ServicesFileError, load_catalog

    settings = app.config["AUTHSERVER"]
    app.extensions[DIRECTORY_KEY] = make_directory(
        settings.directory, api_key=settings.sirene_api_key, base_url=settings.directory_url
    )
    app.extensions[IDENTITY_KEY] = make_verifier(settings)
    fallback = AgencyContact(name="", phone=settings.agency_phone, email=settings.agency_email)
    try:
        app.extensions[AGENCIES_KEY] = load_agency_table(settings.agency_contacts, fallback)
    except ValueError as exc:
        raise ConfigError("AUTHSERVER_AGENCY_CONTACTS", str(exc)) from None
    try:  # load_settings checked it already: this fails only if the file changed since
        app.extensions[SERVICES_KEY] = load_catalog(settings.services_file)
    except ServicesFileError as exc:
        raise ConfigError("AUTHSERVER_SERVICES", str(exc)) from None
    del (
        views_certification,
        views_collaborators,
        views_counselor,
        views_espace,
        views_establishment,
        views_services,
    )  # imported for their routes
    app.register_blueprint(bp)
