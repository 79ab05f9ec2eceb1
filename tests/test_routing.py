"""URL routing: an ``<int:>`` segment only matches what the database can hold (security
review, issue 11: ids beyond 64 bits reached SQLite and answered 500)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import csrf_of

TOO_BIG = [str(2**31), str(2**63), str(2**64), "9" * 40, "9" * 5000]


def int_rules(app) -> list[tuple[str, str]]:
    """(method, URL) for every rule with an ``<int:>`` segment, each one filled with
    ``{}`` (the value under test) and any other segment with a plain word."""
    found = []
    for rule in app.url_map.iter_rules():
        if "<int:" not in rule.rule:
            continue
        url = re.sub(r"<int:\w+>", "{}", rule.rule)
        url = re.sub(r"<(?:\w+:)?\w+>", "approve", url)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, url))
    return found


def test_the_app_has_int_routes(app):
    urls = {url for _method, url in int_rules(app)}
    assert {"/dev/mailbox/{}", "/account/passkeys/{}/delete", "/counselor/requests/{}"} <= urls


@pytest.mark.parametrize("value", TOO_BIG)
def test_ids_beyond_64_bits_are_not_found_on_every_int_route(app, actions, value):
    actions.create_active_account()
    assert actions.login().status_code == 302
    form = {"csrf_token": csrf_of(actions.client.get("/account/passkeys").get_data(as_text=True))}
    answers = {
        (method, url): actions.client.open(url.format(value), method=method, data=form).status_code
        for method, url in int_rules(app)
    }
    assert {key: status for key, status in answers.items() if status != 404} == {}


def test_the_largest_id_still_reaches_the_view(app, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    page = actions.client.get("/account/passkeys").get_data(as_text=True)
    answer = actions.client.post(
        f"/account/passkeys/{2**31 - 1}/rename", data={"csrf_token": csrf_of(page), "name": "x"}
    )
    assert answer.status_code == 302  # « Cette clé d'accès n'existe pas. »


def test_the_dev_mailbox_refuses_a_huge_id(make_app):
    client = make_app(AUTHSERVER_MAIL_URL="console").test_client()
    assert client.get(f"/dev/mailbox/{2**64}").status_code == 404
    assert client.get(f"/dev/mailbox/{2**63 - 1}").status_code == 404  # the view's own 404


def test_only_ascii_digits_are_ids(app, actions):
    actions.create_active_account()
    assert actions.login().status_code == 302
    assert actions.client.post("/account/passkeys/\u0661/delete").status_code == 404


def test_every_url_is_built_as_werkzeug_builds_it(app):
    """The app's rules compile their URL builders at first use (url_rules.py): each one
    builds, with and without extra query arguments and with its defaults, the URL a plain
    werkzeug rule builds, the first time and again."""
    from werkzeug.routing import Map, Rule
    from werkzeug.routing.converters import NumberConverter

    from authserver.url_rules import LazyBuilderRule

    rules = list(app.url_map.iter_rules())
    assert sum(isinstance(rule, LazyBuilderRule) for rule in rules) > 50
    plain = Map(
        [Rule(r.rule, endpoint=r.endpoint, defaults=r.defaults, methods=r.methods) for r in rules],
        converters=app.url_map.converters,
    )
    ours, theirs = app.url_map.bind("localhost"), plain.bind("localhost")
    for rule in rules:
        values: dict[str, object] = {
            name: 7 if isinstance(rule._converters[name], NumberConverter) else "x y/é"
            for name in rule.arguments
            if name not in (rule.defaults or {})
        }
        method = sorted(rule.methods or {"GET"})[0]
        for extra in ({}, {"next": "/espace?a=1&b=é", "page": 2}):
            for _ in range(2):
                built = ours.build(rule.endpoint, {**values, **extra}, method=method)
                assert built == theirs.build(rule.endpoint, {**values, **extra}, method=method)
