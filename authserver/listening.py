"""How ``authserver serve``'s workers share the listening port.

With one shared socket (gunicorn's default) every worker races to ``accept()``: a burst of
keep-alive connections (a load balancer's pool, a benchmark's 16) can land on one or two
workers and leave the others idle for the connections' whole life — measured in 6 runs out
of 15 with 4 workers, even with a small per-worker connection cap. With ``SO_REUSEPORT``
each worker binds its own socket and the kernel hands every new connection to one of them
by a hash of its addresses, whoever is busy: the spread no longer depends on which worker
wakes first.

The price, and why it is checked here: the kernel lets a second process of the same user
bind the same port too, so a forgotten server would silently share the traffic. The master
therefore makes sure, before forking, that nothing listens on the port yet.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    reuse_port: bool
    worker_connections: int


def connection_spread(reuse_port: bool, threads: int, *, socket_activated: bool) -> Spread:
    """Under systemd socket activation the socket is the one systemd passed, shared."""
    if reuse_port and not socket_activated:
        # The kernel already spread the connections: a small cap would only leave those
        # hashed to a full worker waiting in its backlog while the others sit idle.
        return Spread(reuse_port=True, worker_connections=1000)
    # One shared socket: a worker accepts until it holds worker_connections, so a few per
    # thread keeps a burst from all landing on the first worker to wake.
    return Spread(reuse_port=False, worker_connections=threads * 4)


def serving_engine(asked: str | None, *, reuse_port: bool, socket_activated: bool) -> str:
    """Granian unless the listening socket must be one shared socket: Granian's workers
    always bind their own (``SO_REUSEPORT``) and cannot take systemd's. ValueError (its
    message for the operator) when Granian was asked for one anyway."""
    shared = socket_activated or not reuse_port
    if asked is None:
        return "gunicorn" if shared else "granian"
    if asked == "granian" and shared:
        why = "l'activation par socket (systemd)" if socket_activated else "--shared-socket"
        raise ValueError(f"--engine granian : {why} demande --engine gunicorn")
    return asked


def numeric_host(host: str, port: int) -> str:
    """The IP address to bind for ``host``: Granian takes addresses only, where gunicorn also
    took a name (``localhost``) and bound its first address. ValueError (its message for the
    operator) when the name does not resolve."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"AUTHSERVER_HOST : « {host} » ne correspond à aucune adresse") from exc
    return str(found[0][4][0])


def port_is_free(host: str, port: int) -> bool:
    """Whether a plain bind (no ``SO_REUSEPORT``) succeeds: it fails while any socket, with
    or without ``SO_REUSEPORT``, is bound to the port. ``SO_REUSEADDR`` as gunicorn sets it,
    so connections of a just-stopped server in TIME_WAIT do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
