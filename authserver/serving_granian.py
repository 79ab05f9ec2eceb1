"""``authserver serve`` (its default engine): the app and the mail deliverer under Granian.

Why not gunicorn alone: under its threaded workers the HTTP layer (Python request parsing,
the hand-offs between the poller thread and the pool threads, all under the interpreter
lock) cost about as much as our own code on a returning passkey login. Granian parses HTTP
and holds connections in Rust, outside the interpreter lock, and gives each request to a
thread that only runs the app: the same returning passkey login cost 1.4 ms of server CPU
against 2.6 ms under gunicorn (``python -m bench.engines``). gunicorn stays for one shared
socket (``--shared-socket``, systemd socket activation), serving.py.

What gunicorn's hooks do there is done here by other means:
- each worker's start (garbage collector frozen, Argon2id limits): in the app factory that
  Granian calls in each worker after the fork (``worker_app``);
- the back-channel logout thread's clean stop, then the worker's live metric gauges gone:
  multiprocessing finalizers, run when Granian's worker leaves after its requests in flight;
- the mail deliverer beside the workers: a thread of the master keeps it alive (as the
  gunicorn arbiter's loop does) and stops it after the workers;
- a stop signal always reaches the worker (``relay_stop_to_main_thread``), and two environ
  values are made as gunicorn gives them (``environ_as_gunicorn``).
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any

from authserver.config import Settings
from authserver.serving import (
    GRACEFUL_TIMEOUT,
    forget_process,
    load_worker_app,
    mail_deliverer,
    worker_ready,
)

# The signals that stop a worker or the master (Granian's own handlers take these two).
STOPS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class _Plan:
    """What the workers need from the master: set before Granian forks them."""

    settings: Settings
    workers: int
    threads: int
    doorbell: Any  # the mail deliverer's Doorbell, or None


_plan: _Plan | None = None


def worker_app() -> Any:
    """Granian's app factory, called once in each worker process after the fork."""
    import multiprocessing.util
    import os

    from authserver.sessions.oidc import backchannel_worker_of

    plan = _plan
    assert plan is not None, "worker_app is for serving_granian.run's workers"
    stop_handler_runs_once()
    relay_stop_to_main_thread()
    app = load_worker_app(plan.settings, plan.threads, plan.doorbell)
    app.wsgi_app = environ_as_gunicorn(app.wsgi_app)
    # The back-channel thread finishes the logout it is sending before the worker exits.
    multiprocessing.util.Finalize(app, backchannel_worker_of(app).stop, exitpriority=10)
    # Then its live gauges go (gunicorn's master does it at child_exit; Granian's has no hook).
    multiprocessing.util.Finalize(app, forget_process, args=(os.getpid(),), exitpriority=5)
    worker_ready(app, plan.workers, home=os.getpid())
    return app


def stop_handler_runs_once() -> None:
    """Make Granian's worker run its stop handler once, however many stops it hears.

    The handler puts a value in a Rust channel of one place (``WorkerSignal.set``) without
    releasing the interpreter lock. Its reader takes the first value, then holds its end
    until the worker's threads are done, and drops it only once it has the interpreter lock
    back: a third stop blocked the main thread on a full channel, lock held, for good, and
    the master killed the worker after its 20 s timeout. A worker hears its stop more than
    once in the usual Ctrl-C: the terminal's SIGINT, then the master's SIGTERM as it shuts
    down (one Ctrl-C of ``make run`` in about seven). Granian installs the handler after the
    app is loaded, through ``granian._signals.set_main_signals``, looked up when called: the
    handler it is given is wrapped here, before that."""
    import granian._signals as granian_signals

    install = granian_signals.set_main_signals
    if getattr(install, "runs_once", False):
        return

    def set_main_signals(handler: Any, reload_handler: Any = None) -> None:
        heard: list[int] = []

        def once(signum: int, frame: Any) -> None:
            if not heard:
                heard.append(signum)
                handler(signum, frame)

        install(once, reload_handler)  # type: ignore[no-untyped-call]

    set_main_signals.runs_once = True  # type: ignore[attr-defined]
    granian_signals.set_main_signals = set_main_signals


_holding = False


def hold_stops_across_forks() -> None:
    """Every fork of the master starts its child with SIGTERM and SIGINT blocked, and the
    worker unblocks them once its own handler is in place (``relay_stop_to_main_thread``).

    A forked worker starts with the master's handlers, which only flag the master's own loop:
    a stop that came between the fork and the worker's first line (Granian's logging set-up,
    the app factory's lookup; tens of milliseconds on busy cores) was lost, and the master
    killed the worker after its 20 s timeout. It happened when the server was stopped while
    it started a new worker (after a crash, a worker's lifetime, a reload): 2 stops in 8 in
    a test on two busy cores. A blocked signal waits, pending, until it is unblocked; the
    master blocks them only for the fork's instant, in the forking thread."""
    import os

    global _holding
    if _holding:
        return
    _holding = True
    saved: list[Any] = []

    def before() -> None:
        saved.append(signal.pthread_sigmask(signal.SIG_BLOCK, STOPS))

    def after_in_parent() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved.pop())

    os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=saved.clear)


def take_held_stops() -> None:
    """Unblock the stops held since the fork, once the worker's own handler is in place:
    one that came meanwhile is delivered now, to that handler."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


# Sent by the stop relay to wake a worker's main thread (its handler does nothing); a
# terminal's resize sends it too, harmlessly.
WAKE = signal.SIGWINCH


def relay_stop_to_main_thread() -> None:
    """Make sure a worker's main thread hears SIGTERM (or SIGINT), whenever it came and
    whichever thread the kernel gave it to. Called first thing in the worker.

    Granian's worker installs its stop handler only once the app is loaded (a second or
    so), and waits for the signal in its main thread, blocked on a lock. Two ways a stop
    was lost, each leaving the worker to be killed after the 20 s timeout (in about one
    stop in three right after a start):
    - a SIGTERM during the app's loading went to the handler inherited from the master;
    - Python runs handlers in the main thread only, and a signal the kernel delivers to
      another thread of the process (the app's, or Granian's own) does not wake its wait.
    Here a handler of ours keeps an early stop, and Python writes every signal it catches,
    in any thread, to the wakeup fd. A thread waits for Granian's handler, then:
    - a stop our handler kept is sent to the main thread, once (Granian never heard it);
    - a later stop is already Granian's to handle (Python marks a signal caught in any
      thread for the main thread's handler): the main thread is only woken, by a signal
      whose handler does nothing (``WAKE``), and runs Granian's handler once.
    Sending the stop itself again was wrong: when the kernel had given it to the main
    thread, Granian's handler ran once more, and it could then block for good (see
    ``stop_handler_runs_once``, which makes any number of stops safe).

    The same thread stops the worker when the master is gone (killed outright: the OOM
    killer, ``kill -9``). Granian's workers do not notice it themselves: they went on
    listening, and answered with the old code beside the next server on the port. As
    gunicorn's workers do, each looks at its parent once a second, and stops as the
    master would have had it stop.
    """
    import os
    import select
    import time

    early: list[int] = []

    def keep(signum: int, _frame: Any) -> None:
        early.append(signum)

    for stop in STOPS:
        signal.signal(stop, keep)
    signal.signal(WAKE, lambda _signum, _frame: None)  # interrupts the main thread's wait
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    main = threading.main_thread().ident
    assert main is not None
    master = os.getppid()
    take_held_stops()  # a stop that came since the fork is kept now

    def relay() -> None:
        caught = 0
        unheard = False  # a stop Granian's handler will not run for by itself
        while not caught:
            if select.select([read_fd], [], [], 1.0)[0]:
                chunk = os.read(read_fd, 64)
                caught = next((int(stop) for stop in STOPS if int(stop) in chunk), 0)
            elif os.getppid() != master:
                caught, unheard = int(signal.SIGTERM), True
        deadline = time.monotonic() + 300
        while signal.getsignal(signal.SIGTERM) is keep and time.monotonic() < deadline:
            time.sleep(0.02)
        if early or unheard:
            signal.pthread_kill(main, early[0] if early else caught)
        else:
            signal.pthread_kill(main, WAKE)

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()


def environ_as_gunicorn(wsgi_app: Any) -> Any:
    """Two of Granian's WSGI environ values, made as gunicorn (and PEP 3333) give them.

    An HTTP/1.0 request without a Host header (a load balancer's plain health check) comes
    with ``HTTP_HOST`` empty, which the allowed-hosts check refuses (400), where gunicorn
    leaves the key out and the server's own name is used; and its ``SERVER_PROTOCOL`` is
    ``HTTP/1``, not ``HTTP/1.0``.
    """

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_HOST") == "":
            del environ["HTTP_HOST"]
        if environ.get("SERVER_PROTOCOL") == "HTTP/1":
            environ["SERVER_PROTOCOL"] = "HTTP/1.0"
        return wsgi_app(environ, start_response)

    return app


def run(settings: Settings, workers: int, threads: int, address: str) -> None:
    """Run Granian's WSGI workers on ``address`` (an IP address: listening.numeric_host)
    until SIGTERM or SIGINT; with ``settings.mail_worker``, one mail deliverer beside them
    (mail/child.py), as under gunicorn."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    global _plan
    mail_child = mail_deliverer(settings)
    _plan = _Plan(settings, workers, threads, mail_child and mail_child.doorbell)

    server = Server(
        "authserver.serving_granian:worker_app",
        address=address,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        http=HTTPModes.http1,
        websockets=False,
        factory=True,
        log_level="warning",  # type: ignore[arg-type]
        workers_kill_timeout=GRACEFUL_TIMEOUT,
        respawn_failed_workers=True,
    )
    hold_stops_across_forks()
    keeper: _Keeper | None = None
    if mail_child is not None:
        keeper = _Keeper(mail_child)
        server.on_startup(keeper.start)
        server.on_shutdown(keeper.stop)
    server.serve()


class _Keeper:
    """A thread of Granian's master: starts the mail deliverer, starts it again if it dies
    (``MailChild.keep_alive`` about once a second, as gunicorn's arbiter loop calls it), and
    asks it to stop as soon as the master's shutdown begins, so that it finishes its mail
    while the workers finish their requests (and a deliverer stopped by the terminal's
    Ctrl-C is not started again meanwhile)."""

    def __init__(self, mail_child: Any) -> None:
        self.mail_child = mail_child
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mail-keeper", daemon=True)

    def start(self) -> None:
        """Granian's startup hook: its stop handlers are installed; ours goes in front."""
        for stop in STOPS:
            granian_handler = signal.getsignal(stop)

            def handler(signum: int, frame: Any, then: Any = granian_handler) -> None:
                self.stopping.set()
                if callable(then):
                    then(signum, frame)

            signal.signal(stop, handler)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.mail_child.keep_alive()
            self.stopping.wait(1.0)
        self.mail_child.request_stop()  # the mail being sent is finished, the rest given back

    def stop(self) -> None:
        """Granian's shutdown hook, once the workers are gone."""
        self.stopping.set()
        self.thread.join()
        self.mail_child.wait(GRACEFUL_TIMEOUT)
