"""Waiting for the account e-mail jobs (reset and activation requests) the worker handles."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from sqlalchemy import select

from authserver.db import get_database


def pending_jobs(app: Flask) -> list[Any]:
    from authserver.models import AccountMailJob

    with get_database(app).session_scope() as session:
        return list(session.scalars(select(AccountMailJob).order_by(AccountMailJob.id)))


def wait_for_mail_jobs(app: Flask, timeout: float = 10.0) -> None:
    """Until the mail worker has handled every queued request (its e-mails are then in the
    outbox: a job is removed in the transaction that queues them)."""
    deadline = time.monotonic() + timeout
    while pending_jobs(app):
        if time.monotonic() > deadline:
            raise AssertionError(f"account mail jobs still pending after {timeout} s")
        time.sleep(0.02)
