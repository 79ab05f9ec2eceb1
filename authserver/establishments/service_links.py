"""Where each service of the espace leads, for the current espace (Flask glue over the
services file): the one place that decides between the service's own URL, our guide page
and the guide's « espace certifié » message."""

from __future__ import annotations

from flask import current_app, url_for

from authserver.establishments import SERVICES_KEY
from authserver.establishments.portal_services import Catalog, PortalService


def catalog() -> Catalog:
    return current_app.extensions[SERVICES_KEY]


def is_gated(item: PortalService, certified: bool) -> bool:
    return item.needs_certification and not certified


def entry_href(item: PortalService, certified: bool) -> str | None:
    """The espace's link to ``item``; None when the espace shows it gated (no link).

    A service with a guide page links to that page whether certified or not: the guide's
    page is information for every employer, and its « J'accède au service » is the gate.
    """
    if item.page is not None:
        return url_for("establishments.service_page", service_id=item.id)
    if is_gated(item, certified):
        return None
    return item.url or url_for("establishments.service_page", service_id=item.id)


def access_href(item: PortalService, certified: bool) -> str:
    """« J'accède au service »: the service itself, or the guide's message when the espace
    is not certified (or our page saying the service is not reachable yet, without URL)."""
    if is_gated(item, certified):
        return url_for("establishments.service_access", service_id=item.id)
    return item.url or url_for("establishments.service_page", service_id=item.id)
