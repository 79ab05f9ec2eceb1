"""The mail deliverer ``authserver serve`` keeps beside its workers (mail/child.py): started
with its doorbell, started again after a death (later after each quick one), stopped last,
and its doorbell, which a request rings without ever waiting."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from authserver.mail.child import FIRST_RESTART, LONGEST_RESTART, MailChild, listen

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
DEAF = (
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kill(child: MailChild) -> int:
    assert child.proc is not None
    pid = child.proc.pid
    os.kill(pid, signal.SIGKILL)
    child.proc.wait()
    return pid


def test_started_with_its_doorbell_and_its_parent():
    child = MailChild(SLEEPER)
    try:
        child.keep_alive()
        assert child.proc is not None and child.proc.poll() is None
        command = child.command()
        assert command[command.index("--wake-fd") + 1] == str(child.doorbell.read_fd)
        assert command[command.index("--parent") + 1] == str(os.getpid())
        first = child.proc.pid
        child.keep_alive()  # alive: left alone
        assert child.proc.pid == first
    finally:
        child.request_stop()
        child.wait(5)


def test_a_dead_deliverer_is_started_again_later_after_each_quick_death():
    clock = Clock()
    gone: list[int] = []
    child = MailChild(SLEEPER, clock=clock, on_exit=gone.append)
    try:
        child.keep_alive()
        waits = []
        for _ in range(8):
            pid = kill(child)
            child.keep_alive()  # notices the death, waits before the next start
            assert child.proc is None and gone[-1] == pid
            waits.append(child.restart_wait)
            clock.now += child.restart_wait - 0.01
            child.keep_alive()
            assert child.proc is None  # not yet
            clock.now += 0.02
            child.keep_alive()
            assert child.proc is not None and child.proc.poll() is None
        assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
        clock.now += 3600  # it lived an hour: the next death waits the first wait again
        kill(child)
        child.keep_alive()
        assert child.restart_wait == FIRST_RESTART <= LONGEST_RESTART
    finally:
        child.request_stop()
        child.wait(5)


def test_its_exit_status_is_logged_and_a_death_noticed_when_someone_else_reaped_it(caplog):
    """gunicorn's master reaps every child it sees exit: ``collect`` (from its SIGCHLD
    handling) reads the deliverer's status first; when gunicorn was first, the death is
    still noticed (Popen alone would wait for a process that no longer exists)."""
    caplog.set_level(logging.WARNING, logger="authserver.mail.child")
    child = MailChild((sys.executable, "-c", "raise SystemExit(3)"))
    try:
        child.keep_alive()
        proc = child.proc
        assert proc is not None
        deadline = time.monotonic() + 10
        while child.proc is not None and time.monotonic() < deadline:
            time.sleep(0.02)
            child.collect()
            child.keep_alive()
        assert proc.returncode == 3 and "(exit code 3)" in caplog.text

        child = MailChild(SLEEPER)
        child.keep_alive()
        proc = child.proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        child_pid, _ = os.waitpid(proc.pid, 0)  # as gunicorn's waitpid(-1) would
        assert child_pid == proc.pid
        child.collect()
        child.keep_alive()
        assert child.proc is None  # noticed, not taken for alive
        assert "(exit status unknown)" in caplog.text

        child = MailChild(SLEEPER)
        child.keep_alive()
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGKILL)
        time.sleep(0.3)
        child.collect()
        child.keep_alive()
        assert "(killed by SIGKILL)" in caplog.text
    finally:
        child.request_stop()
        child.wait(5)


def test_on_shutdown_it_is_never_started_again_and_killed_when_it_outlives_the_wait():
    gone: list[int] = []
    child = MailChild(DEAF, on_exit=gone.append)
    child.keep_alive()
    proc = child.proc
    assert proc is not None
    time.sleep(0.5)  # its SIGTERM handler is set
    child.request_stop()
    started = time.monotonic()
    child.wait(1.0)
    assert 0.9 < time.monotonic() - started < 5
    assert proc.returncode == -signal.SIGKILL
    assert gone == [proc.pid]
    child.keep_alive()
    assert child.proc is None  # stopping: no new deliverer


def test_a_ring_wakes_the_listener_and_never_blocks_when_nobody_reads():
    child = MailChild(SLEEPER)
    woken = threading.Event()
    try:
        started = time.monotonic()
        for _ in range(100_000):  # far more than a pipe holds (64 KiB), nobody reading
            child.doorbell.ring()
        assert time.monotonic() - started < 5
        listen(child.doorbell.read_fd, woken.set)
        assert woken.wait(5)
        woken.clear()
        time.sleep(0.2)  # every ring so far read
        woken.clear()
        child.doorbell.ring()
        assert woken.wait(5)
    finally:
        child.doorbell.close()


def test_a_fork_of_another_thread_never_holds_up_a_spawn():
    """Granian's master forks its workers from its main thread while a thread of its starts
    the deliverer. A process forked while Popen waits for its child's exec inherited the
    end of the pipe Popen waits on, and Popen waited as long as that process lived (the
    deliverer was then never started again). Each round here forks a process that lives
    3 s at the moment another thread spawns: the spawn must not wait for it."""
    from authserver.mail.child import spawn

    waits = []
    for round_ in range(20):
        barrier = threading.Barrier(2)
        took: list[float] = []

        def spawner(barrier: threading.Barrier = barrier, took: list[float] = took) -> None:
            barrier.wait()
            started = time.monotonic()
            proc = spawn([sys.executable, "-c", "pass"])
            took.append(time.monotonic() - started)
            proc.wait()

        thread = threading.Thread(target=spawner)
        thread.start()
        barrier.wait()
        time.sleep(round_ * 0.0003)  # somewhere in the spawn's few milliseconds
        pid = os.fork()
        if pid == 0:  # as a worker would: lives on, holding whatever it inherited
            time.sleep(3)
            os._exit(0)
        thread.join(10)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        waits.extend(took)
    assert len(waits) == 20
    assert max(waits) < 2.0, sorted(waits)[-3:]
