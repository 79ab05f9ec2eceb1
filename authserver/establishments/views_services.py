"""The espace's service pages: a guide page before a service (« Licenciement économique :
vous devez proposer le CSP… »), the guide's message for an espace not yet certified, the
page of a service that has no address yet, and « Personnaliser vos accès »."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from authserver import db
from authserver.establishments.blueprint import bp
from authserver.establishments.portal_services import MAX_DIRECT_ACCESS, PortalService
from authserver.establishments.service_links import access_href, catalog, is_gated
from authserver.establishments.views_espace import onboarding_redirect

TAB_TITLES = {
    "accueil": "Accueil",
    "recrutement": "Mes services de recrutement",
    "administratif": "Mes services administratifs",
}
# The guide's heading of the « espace certifié » message, for a service behind a guide page.
GATED_HEADINGS = {"csp": "Contrat de Sécurisation Professionnelle"}


def _service_or_404(service_id: str) -> PortalService:
    item = catalog().get(service_id)
    if item is None:
        abort(404)
    return item


@bp.get("/espace/services/<service_id>")
@login_required
def service_page(service_id: str) -> object:
    unfinished = onboarding_redirect()
    if unfinished is not None:
        return unfinished
    item = _service_or_404(service_id)
    certified = current_user.certified_at is not None
    template = f"establishments/services/{item.page or 'service'}.html"
    return render_template(
        template,
        item=item,
        certified=certified,
        access=access_href(item, certified),
        tab_title=TAB_TITLES[item.tab],
    )


@bp.get("/espace/services/<service_id>/acces")
@login_required
def service_access(service_id: str) -> object:
    """« J'accède au service »: the service when the espace may use it, else the guide's
    message (« … vous devez disposer d'un espace certifié* »)."""
    unfinished = onboarding_redirect()
    if unfinished is not None:
        return unfinished
    item = _service_or_404(service_id)
    certified = current_user.certified_at is not None
    if not is_gated(item, certified):
        return redirect(access_href(item, certified))
    return render_template(
        "establishments/services/gated.html",
        item=item,
        heading=GATED_HEADINGS.get(item.page or "", item.title),
        tab_title=TAB_TITLES[item.tab],
    )


@bp.route("/espace/acces-directs", methods=["GET", "POST"])
@login_required
def shortcuts() -> object:
    """« Personnaliser vos accès »: up to six services of the espace in « Mes accès directs »,
    or back to those the services file proposes."""
    unfinished = onboarding_redirect()
    if unfinished is not None:
        return unfinished
    choices = catalog().shortcut_choices()
    error = None
    if request.method == "POST":
        if request.form.get("action") == "reset":
            current_user.espace_shortcuts = None
            db.session().commit()
            flash("Vos accès directs sont ceux proposés par défaut.", "success")
            return redirect(url_for("establishments.espace"))
        offered = {service.id for service in choices}
        picked = request.form.getlist("service")
        if any(service_id not in offered for service_id in picked):
            abort(400)  # not a box of this page
        if len(set(picked)) > MAX_DIRECT_ACCESS:
            error = f"Choisissez au plus {MAX_DIRECT_ACCESS} services."
        else:
            current_user.espace_shortcuts = [s.id for s in choices if s.id in set(picked)]
            db.session().commit()
            flash("Vos accès directs sont enregistrés.", "success")
            return redirect(url_for("establishments.espace"))
        selected = set(picked)
    else:
        selected = {service.id for service in catalog().shortcuts(current_user.espace_shortcuts)}
    return render_template(
        "establishments/services/shortcuts.html",
        choices=choices,
        selected=selected,
        error=error,
        maximum=MAX_DIRECT_ACCESS,
        tab_titles=TAB_TITLES,
    ), (400 if error else 200)
