"""``authserver serve --engine gunicorn``: gunicorn's workers, their hooks, and the mail
deliverer beside them (the default engine, Granian, is serving_granian.py).

The command line's checks (the port, the database, the SQLite files' recovery) stay in
``cli.py``; this module is what runs once they passed: the gunicorn application, the
master's loop that also keeps the mail deliverer alive (mail/child.py), and the hooks each
worker runs at start and exit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from authserver.config import Settings

GRACEFUL_TIMEOUT = 20


def _worker_started(worker: Any) -> None:
    """gunicorn ``post_worker_init``: on SIGTERM, stop taking new back-channel logouts at
    once; and the loaded app's objects are frozen for the garbage collector.

    gunicorn lets the requests in flight finish first (up to the graceful timeout) and only
    then calls ``worker_exit``; meanwhile the back-channel thread finishes the logout it is
    sending and starts no other, so that the worker's exit never waits for a whole batch.
    (The workers send no mail: the deliverer beside them does, mail/child.py.)
    """
    import signal

    from authserver.sessions.oidc import backchannel_worker_of

    app = worker.wsgi
    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: Any) -> None:
        backchannel_worker_of(app).request_stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, _on_term)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn: never disturb a request
    worker_ready(app, worker.cfg.workers, home=worker.age)


def load_worker_app(settings: Settings, threads: int, doorbell: Any) -> Any:
    """A web worker's app, under either engine: ``threads`` sizes its database pool; it
    sends no mail itself, the deliverer beside the workers does, woken by ``doorbell``
    (mail/child.py; None: no deliverer) at each commit that queues mail."""
    from authserver import create_app
    from authserver.mail import worker_of

    app = create_app(settings=replace(settings, threads=threads, mail_worker=False))
    if doorbell is not None:
        worker_of(app).notify = doorbell.ring
    return app


def worker_ready(app: Any, workers: int, home: int) -> None:
    """A worker's app is loaded (either engine): frozen for the collector, its share of
    the Argon2id hashes set."""
    freeze_loaded_app()
    limit_hashing(app, workers, home=home)


def mail_deliverer(settings: Settings) -> Any:
    """The one mail deliverer beside the web workers (mail/child.MailChild), or None when
    ``settings.mail_worker`` is off."""
    from authserver.mail.child import MailChild

    if not settings.mail_worker:
        return None
    return MailChild(poll=settings.mail_poll, on_exit=forget_process)


def freeze_loaded_app() -> None:
    """The app is loaded: its ~150,000 objects (models, templates, the password and
    passkey-provider lists) live as long as the worker. Frozen, the collector no longer
    walks them at each full collection, a pause of the whole worker (about 90 ms here)
    that showed as dips of a third in the passkey login benchmark's per-second rate."""
    import gc

    gc.collect()
    gc.freeze()


def limit_hashing(app: Any, workers: int, home: int = 0) -> None:
    """Each worker computes at most its share of the cores' Argon2id hashes at a time and,
    when there are more workers than cores, takes one of the cores' slots shared by all of
    them for each (accounts/hash_slots.py); ``home``: the worker's number."""
    from pathlib import Path

    from authserver.accounts.hash_slots import HashSlots
    from authserver.accounts.passwords import PasswordHashing, hashes_at_once, usable_cores
    from authserver.accounts.service import HASHING_KEY

    hashing = app.extensions.get(HASHING_KEY)
    if isinstance(hashing, PasswordHashing):
        cores = usable_cores()
        hashing.limit(hashes_at_once(cores, workers))
        if workers > cores:
            hashing.share(HashSlots(Path(app.instance_path), cores, home))


def _worker_exiting(_server: Any, worker: Any) -> None:
    """gunicorn ``worker_exit`` (in the worker): stop the back-channel thread cleanly.

    The logout token being sent is finished and marked, the rest of its batch released for
    another worker; the thread is joined before the process goes.
    """
    from flask import Flask

    from authserver.sessions.oidc import backchannel_worker_of

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        backchannel_worker_of(app).stop()


def _child_exited(_server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` (in the master): the dead worker's live gauges go."""
    forget_process(worker.pid)


def forget_process(pid: int) -> None:
    """A process of the server is gone: its live gauges go with it."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def run(settings: Settings, workers: int, threads: int, reuse_port: bool, connections: int) -> None:
    """Run gunicorn until SIGTERM or SIGINT; with ``settings.mail_worker``, one mail deliverer
    runs beside the workers instead of a delivery thread in each (mail/child.py)."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    mail_child = mail_deliverer(settings)

    class ServeArbiter(Arbiter):  # type: ignore[misc]
        """gunicorn's master, which also keeps the mail deliverer alive and stops it last."""

        def manage_workers(self) -> None:
            super().manage_workers()
            if mail_child is not None:
                mail_child.keep_alive()

        def reap_workers(self) -> None:
            if mail_child is not None:
                mail_child.collect()  # its exit status, before gunicorn reaps every child
            super().reap_workers()

        def stop(self, graceful: bool = True) -> None:
            if mail_child is None:
                super().stop(graceful)
                return
            mail_child.request_stop()  # it finishes its mail while the workers finish theirs
            try:
                super().stop(graceful)
            finally:
                mail_child.wait(GRACEFUL_TIMEOUT if graceful else 1.0)

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "reuse_port": reuse_port,
                "worker_connections": connections,
                "graceful_timeout": GRACEFUL_TIMEOUT,
                "timeout": 60,
                "control_socket_disable": True,
                "accesslog": None,
                "post_worker_init": _worker_started,
                "worker_exit": _worker_exiting,
                "child_exit": _child_exited,
            }
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return load_worker_app(settings, threads, mail_child and mail_child.doorbell)

        def run(self) -> None:
            import sys

            try:
                ServeArbiter(self).run()
            except RuntimeError as exc:  # as gunicorn's own run()
                print(f"\nError: {exc}\n", file=sys.stderr)
                sys.exit(1)

    Server().run()
