"""Fixtures shared by the OpenID Connect tests: a service's back-channel logout endpoint."""

from __future__ import annotations

import pytest

from authserver.sessions.oidc import backchannel_worker_of
from tests.sessions.oidc_support import Receiver


@pytest.fixture
def receiver(app):
    """``receiver(**options)`` makes a back-channel endpoint; the app's sender is sped up."""
    made: list[Receiver] = []
    backchannel_worker_of(app).retry_base = 0.2

    def make(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    backchannel_worker_of(app).stop()
    for item in made:
        item.close()
