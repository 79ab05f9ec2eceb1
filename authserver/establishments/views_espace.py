"""Mon espace personnel: the establishment, the three tabs and the services listed in them
(from the services file, establishments/portal_services.py)."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from authserver import db
from authserver.establishments import AGENCIES_KEY, service
from authserver.establishments.agencies import AgencyTable
from authserver.establishments.blueprint import bp
from authserver.establishments.portal_services import TABS
from authserver.establishments.service_links import access_href, catalog, entry_href


def onboarding_redirect() -> Response | None:
    """The espace and its service pages wait for the onboarding (establishment, choice of
    certification) to be done; the certification itself may still be pending."""
    target = service.onboarding_target(current_user)
    if target is not None and target != url_for("establishments.certification"):
        return redirect(target)
    return None


@bp.get("/espace")
@login_required
def espace() -> object:
    from authserver.sessions.landing import STAFF_TOOLS

    tool = STAFF_TOOLS.get(current_user.role)
    if tool is not None:
        # Staff have no establishment to show: their espace is their tool (issue 12).
        return redirect(url_for(tool.endpoint))
    unfinished = onboarding_redirect()
    if unfinished is not None:
        return unfinished
    if current_user.certified_at is None and service.expire_stale_online_checks(current_user):
        db.session().commit()
    membership = service.active_membership(current_user)
    certified = current_user.certified_at is not None
    certification = service.latest_certification(current_user)
    establishment = membership.establishment if membership else None
    agencies: AgencyTable = current_app.extensions[AGENCIES_KEY]
    agency = agencies.for_postal_code(establishment.postal_code if establishment else None)
    # ?onglet=administratif: the tab to open (the way back from a service page).
    tab = request.args.get("onglet", "accueil")
    return render_template(
        "establishments/espace.html",
        user=current_user,
        membership=membership,
        establishment=establishment,
        certified=certified,
        certification=certification,
        catalog=catalog(),
        selected_tab=tab if tab in TABS else "accueil",
        entry_href=entry_href,
        access_href=access_href,
        agency=agency,
    )
