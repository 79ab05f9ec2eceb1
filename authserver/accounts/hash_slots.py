"""At most one Argon2id computation per core across the workers of one server (issue 16).

Each worker limits its own computations to its share of the cores
(``passwords.hashes_at_once``): one when there are as many workers as cores. With more
workers than cores — ``authserver serve``'s default is two per core — each still computes
one at a time, so twice as many hashes as cores ran at once, and Argon2id, memory-hard,
ran slower for all of them. Here the workers share one slot per core: lock files in the
instance folder, held with ``flock`` for the length of one computation.

A lock file, not a semaphore in shared memory: the kernel drops a dead worker's ``flock``
(SIGKILL, out of memory), where a semaphore's count would stay taken for ever and, after as
many deaths as cores, leave every password login waiting.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class HashSlots:
    """``cores`` slots in ``directory``; this worker's home slot is ``home % cores``.

    Used by a worker that computes one hash at a time (its threads take turns before
    asking here): a process's ``flock`` on a file it holds already succeeds again, so two
    threads of one process must never both be inside ``turn``.
    """

    def __init__(self, directory: Path, cores: int, home: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.cores = max(1, cores)
        self.files = [
            os.open(directory / f"argon2id-slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            for i in range(self.cores)
        ]
        start = home % self.cores
        # A free slot first, any of them, starting from home (workers spread over the slots).
        self.order = [self.files[(start + i) % self.cores] for i in range(self.cores)]

    @contextmanager
    def turn(self) -> Iterator[None]:
        held = None
        for fd in self.order:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            held = fd
            break
        if held is None:
            held = self.order[0]
            fcntl.flock(held, fcntl.LOCK_EX)  # waits without the GIL
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in self.files:
            os.close(fd)
        self.files = []
