"""What ``authserver serve``'s Granian master hands its forked workers: stops held.

In a fresh interpreter (a fork hook cannot be taken back, and the test runner's own forks
must not inherit it): a « master » whose SIGTERM handler only flags its own loop, as
Granian's does, forks a « worker » and stops it at once; the worker installs its own
handler only after a start-up pause, as a Granian worker does once it has set up its
logging and looked up the app factory.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCENARIO = """
import os, signal, sys, time
from authserver import serving_granian

signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the master's own handler
if sys.argv[1] == "held":
    serving_granian.hold_stops_across_forks()
worker = os.fork()
if worker == 0:
    time.sleep(0.3)  # the worker starts up: its stop comes now
    heard = []
    signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
    serving_granian.take_held_stops()
    for _ in range(100):
        if heard:
            os._exit(0)
        time.sleep(0.001)
    os._exit(3)  # the stop was lost
os.kill(worker, signal.SIGTERM)
print(os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1]))
# The master itself still hears its stops after the fork.
heard = []
signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.01)
print(len(heard))
"""


@pytest.mark.parametrize(("mode", "worker_exit"), [("held", "0"), ("as-is", "3")])
def test_a_stop_sent_while_a_worker_starts_waits_for_its_handler(
    mode: str, worker_exit: str
) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", SCENARIO, mode], capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    # Held, the worker's own handler hears it; as Granian forks by itself, it is lost.
    assert ran.stdout.split() == [worker_exit, "1"]
