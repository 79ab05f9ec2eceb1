"""The mail deliverer that ``authserver serve`` runs beside its web workers, as one process.

Why a process and not a delivery thread in every web worker: under a peak of new-browser
passkey logins (each queues its alert e-mail), the threads cost the request threads about
0.6 ms of CPU per login beyond their own 0.44 ms per e-mail: they shared the workers'
interpreter lock. With one deliverer beside the workers the same cores answered a median
of 0.65 new-browser logins per returning one instead of 0.55 (interleaved in one run); in
such a peak the alerts leave a few seconds after it, at once otherwise. One process is also
one claimer and one SMTP connection, not one per worker.

It runs at the workers' CPU priority. Lower (``nice``) did not help: in a peak it is
SQLite's write lock, not the CPU, that holds the deliverer back, and a deliverer preempted
while holding that lock held up every login (at nice 19: fewer logins, p99 124-180 ms;
nice 10 and 0 the same within this machine's noise).

The server's master (gunicorn's arbiter, or a thread of Granian's main process) starts it,
starts it again if it dies (waiting longer after each quick death), and stops it after the
web workers on shutdown: the mail being sent is finished, the rest of its batch given back.
A commit that queues mail rings a doorbell, a pipe whose writing end every worker inherits,
so the deliverer sends at once as the thread did; a ring that is lost (the pipe full, the
deliverer restarting) costs at most its one-second look.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

FIRST_RESTART = 1.0  # seconds before the first restart of a deliverer that died
LONGEST_RESTART = 60.0
QUICK_DEATH = 30.0  # a deliverer that lived less than this doubles the next wait

DELIVER = ("-c", "from authserver.cli import main; main()", "mail", "deliver")

# No fork of this process while a child is being spawned here. Popen waits for its child's
# exec on a pipe whose writing end only the child should hold; a process forked meanwhile
# by another thread (Granian's master forks its workers, and forks them again, from its
# main thread while a thread of its starts the deliverer) inherits that end and keeps it
# open for its whole life, and the Popen never returned: the deliverer was then never
# started again after a death (a test found it in 7 runs out of 10). Every os.fork (the
# workers', through multiprocessing) waits for the lock; a spawn holds it.
_SPAWNING = threading.RLock()
os.register_at_fork(
    before=_SPAWNING.acquire,
    after_in_parent=_SPAWNING.release,
    after_in_child=_SPAWNING.release,
)


def spawn(command: Sequence[str], pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command)``, never beside a fork of another thread."""
    with _SPAWNING:
        return subprocess.Popen(  # noqa: S603 (this interpreter, our own arguments)
            list(command), pass_fds=tuple(pass_fds), stdin=subprocess.DEVNULL
        )


class Doorbell:
    """A pipe made in the master before the workers fork: they ring, the deliverer listens.

    Ringing never blocks a request: the writing end is non-blocking, and a full pipe means
    rings are already waiting to be read.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)

    def ring(self) -> None:
        # Full (rings already wait to be read) or closed at shutdown: nothing to add.
        with contextlib.suppress(OSError):
            os.write(self.write_fd, b"\0")

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def listen(fd: int, wake: Callable[[], None]) -> threading.Thread:
    """In the deliverer: call ``wake`` whenever the doorbell rang (all rings read at once);
    the thread ends with the pipe."""

    def _run() -> None:
        while True:
            try:
                rings = os.read(fd, 4096)
            except OSError:
                return
            if not rings:
                return
            wake()

    thread = threading.Thread(target=_run, name="mail-doorbell", daemon=True)
    thread.start()
    return thread


class MailChild:
    """Start, watch and stop the one deliverer; every method is called from the master's
    loop (``keep_alive`` about once a second), never from a signal handler."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        poll: float = 1.0,
        on_exit: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.doorbell = Doorbell()
        self.base = list(command or (sys.executable, *DELIVER))
        self.poll = poll  # seconds between its looks at the queue when no ring came
        self.on_exit = on_exit
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.next_start = 0.0
        self.restart_wait = FIRST_RESTART
        self.stopping = False
        self.status_lost = False  # gunicorn reaped the deliverer before ``collect`` could

    def command(self) -> list[str]:
        return [
            *self.base,
            "--poll",
            str(self.poll),
            "--wake-fd",
            str(self.doorbell.read_fd),
            "--parent",
            str(os.getpid()),
        ]

    def keep_alive(self) -> None:
        """Start the deliverer, or start it again once its wait after a death is over."""
        if self.stopping:
            return
        proc = self.proc
        if proc is not None:
            if proc.returncode is None:
                self.collect()
            if proc.returncode is None:
                return
            self._died(proc)
        if self.clock() >= self.next_start:
            self._start()

    def _start(self) -> None:
        self.proc = spawn(self.command(), pass_fds=(self.doorbell.read_fd,))
        self.started_at = self.clock()
        log.info("mail deliverer started (pid %s)", self.proc.pid)

    def collect(self) -> None:
        """Reap the deliverer if it has exited, keeping its exit status: gunicorn's master
        reaps every child it sees exit (``waitpid(-1)``), and Popen then reports 0 for a
        status it never read. Called by the master's SIGCHLD handling, before gunicorn's."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by gunicorn first: gone, its status with it
            proc.returncode = 0
            self.status_lost = True
            return
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)

    def _died(self, proc: subprocess.Popen[bytes]) -> None:
        # When gunicorn reaped it first, the status is lost: it is not part of the decision.
        now = self.clock()
        if now - self.started_at < QUICK_DEATH:
            self.restart_wait = min(self.restart_wait * 2, LONGEST_RESTART)
        else:
            self.restart_wait = FIRST_RESTART
        self.next_start = now + self.restart_wait
        self.proc = None
        log.warning(
            "mail deliverer (pid %s) stopped (%s); starting another in %.0f s",
            proc.pid,
            self._exit_text(proc.returncode),
            self.restart_wait,
        )
        self.status_lost = False
        if self.on_exit is not None:
            self.on_exit(proc.pid)

    def _exit_text(self, code: int | None) -> str:
        if self.status_lost or code is None:
            return "exit status unknown"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def request_stop(self) -> None:
        """Shutdown begins: no restart; the deliverer finishes the mail it is sending."""
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        """After ``request_stop``: wait for the deliverer, killed after ``timeout``."""
        proc = self.proc
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mail deliverer still sending after %.0f s; killing it", timeout)
                proc.kill()
                proc.wait()
            self.proc = None
            if self.on_exit is not None:
                self.on_exit(proc.pid)
        self.doorbell.close()
