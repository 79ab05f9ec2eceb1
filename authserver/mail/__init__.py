"""E-mail: a durable outbox written in the caller's transaction, and its delivery.

``outbox.enqueue`` adds the message to the current database session, so an
e-mail exists exactly when what caused it was committed. A delivery worker (the
deliverer ``authserver serve`` runs beside its workers, ``child.py``; a thread of an app
made elsewhere; or ``authserver mail deliver``) sends due rows with retries and
exponential backoff; SMTP being down delays mail, never loses it. Before each round the
worker runs its producers: work that queues mail off the request path (the accounts'
reset and activation-link requests, ``accounts/mail_jobs.py``). The alerts queued as their
facts (``rendering.py``) are put into words by the deliverer, right before each send.
"""

from __future__ import annotations

from flask import Flask

from authserver.mail.delivery import DeliveryWorker, make_transport
from authserver.mail.outbox import install_wakeup

EXTENSION_KEY = "authserver.mail"


def init_app(app: Flask) -> None:
    from authserver.db import get_database
    from authserver.mail.views import bp

    settings = app.config["AUTHSERVER"]
    transport = make_transport(settings)
    worker = DeliveryWorker(app, get_database(app), transport, settings)
    app.extensions[EXTENSION_KEY] = worker
    install_wakeup(get_database(app), worker)
    app.register_blueprint(bp)
    if settings.mail_worker and not app.config.get("MAIL_WORKER_DISABLED"):
        worker.start()


def worker_of(app: Flask) -> DeliveryWorker:
    return app.extensions[EXTENSION_KEY]
