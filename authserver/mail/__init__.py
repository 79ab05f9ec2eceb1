"""E-mail: a durable outbox written in the caller's transaction, and its delivery.

``outbox.enqueue`` adds the message to the current database session, so an
e-mail exists exactly when what caused it was committed. A delivery worker (the
deliverer ``authserver serve`` runs beside its workers, ``child.py``; a thread of an app
made elsewhere; or ``authserver mail deliver``) sends due rows with retries and
exponential backoff; SMTP being down delays mail, never loses it. Before each round the
worker runs its producers: work that queues mail off the request path (the accounts'
reset and activation-link requests, ``accounts/mail_jobs.py``) and the words of the alerts
queued as their facts (``facts.py``).
"""

from __future__ import annotations

from functools import partial

from flask import Flask

from authserver.mail.delivery import DeliveryWorker, backoff, make_transport
from authserver.mail.facts import render_due
from authserver.mail.outbox import install_wakeup

EXTENSION_KEY = "authserver.mail"


def init_app(app: Flask) -> None:
    from authserver.db import get_database
    from authserver.mail.views import bp

    settings = app.config["AUTHSERVER"]
    transport = make_transport(settings)
    worker = DeliveryWorker(app, get_database(app), transport, settings)
    app.extensions[EXTENSION_KEY] = worker
    # Alerts queued as their facts are put into words at the start of every round.
    worker.add_producer(
        partial(
            render_due,
            get_database(app),
            app.jinja_env,
            lambda attempts: backoff(attempts, settings),
        )
    )
    install_wakeup(get_database(app), worker)
    app.register_blueprint(bp)
    if settings.mail_worker and not app.config.get("MAIL_WORKER_DISABLED"):
        worker.start()


def worker_of(app: Flask) -> DeliveryWorker:
    return app.extensions[EXTENSION_KEY]
