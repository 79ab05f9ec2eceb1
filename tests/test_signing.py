"""Serializers with kept signers (signing.py): the same tokens and cookies as itsdangerous's
own, read both ways, with the same refusals."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from authserver.signing import kept_signers

SECRET = "a secret key of forty characters or more!"
OLD = "the key before the rotation, still accepted"


def flask_serializer(
    secret: str = SECRET, fallbacks: tuple[str, ...] = ()
) -> URLSafeTimedSerializer:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret, SECRET_KEY_FALLBACKS=list(fallbacks))
    return app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]


SERIALIZERS = {
    "flask session": lambda: flask_serializer(fallbacks=(OLD,)),
    "csrf token": lambda: URLSafeTimedSerializer(SECRET, salt="wtf-csrf-token"),
}


@pytest.mark.parametrize("name", SERIALIZERS)
@pytest.mark.parametrize(
    "value", ["3f" * 20, {"csrf_token": "3f" * 20}, {"long": "x" * 500}, {"é": ["ü", 1]}]
)
def test_the_same_output_read_both_ways(name, value, monkeypatch):
    original = SERIALIZERS[name]()
    kept = kept_signers(original)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)
    token = kept.dumps(value)
    assert token == original.dumps(value)
    assert original.loads(token, max_age=60) == value
    assert kept.loads(original.dumps(value), max_age=60) == value
    assert kept.loads(token, max_age=60) == value  # its signer, made once, serves again


@pytest.mark.parametrize("name", SERIALIZERS)
def test_the_same_refusals(name, monkeypatch):
    original = SERIALIZERS[name]()
    kept = kept_signers(original)
    token = original.dumps({"a": 1})
    forged = URLSafeTimedSerializer("another key entirely, forty characters", salt=original.salt)
    other_salt = URLSafeTimedSerializer(original.secret_keys, salt=b"another.salt")
    for bad in (
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        forged.dumps({"a": 1}),
        other_salt.dumps({"a": 1}),
        URLSafeSerializer(SECRET, salt=original.salt).dumps({"a": 1}),  # no timestamp
        "",
        "garbage",
    ):
        with pytest.raises(BadSignature):
            original.loads(bad)
        with pytest.raises(BadSignature):
            kept.loads(bad)
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(SignatureExpired):
        kept.loads(token, max_age=60)


def test_a_rotated_key_still_reads_and_the_new_one_signs():
    before = kept_signers(flask_serializer(OLD))
    after = kept_signers(flask_serializer(SECRET, fallbacks=(OLD,)))
    assert after.loads(before.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(BadSignature):
        before.loads(after.dumps({"a": 1}))  # signed with the new key, unknown to before


def test_a_serializer_of_other_signers_is_refused():
    from itsdangerous import Signer

    class Plain(URLSafeTimedSerializer):
        default_signer = Signer

    with pytest.raises(TypeError):
        kept_signers(Plain(SECRET))
