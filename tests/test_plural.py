"""French counts (authserver/plural.py): « 1 minute », « 15 minutes », never « minute(s) »."""

from __future__ import annotations

import pytest

from authserver.plural import plural


@pytest.mark.parametrize(
    ("count", "singular", "plural_form", "expected"),
    [
        (0, "minute", None, "0 minute"),
        (1, "minute", None, "1 minute"),
        (2, "minute", None, "2 minutes"),
        (15, "minute", None, "15 minutes"),
        (1, "autre session fermée", "autres sessions fermées", "1 autre session fermée"),
        (3, "autre session fermée", "autres sessions fermées", "3 autres sessions fermées"),
        (
            2,
            "e-mail remis dans la file",
            "e-mails remis dans la file",
            "2 e-mails remis dans la file",
        ),
    ],
)
def test_french_counts(count, singular, plural_form, expected):
    assert plural(count, singular, plural_form) == expected


def test_the_template_filter(app):
    with app.test_request_context("/"):
        template = app.jinja_env.from_string(
            '{{ 1 | plural("heure") }} / {{ 72 | plural("heure") }}'
        )
        assert template.render() == "1 heure / 72 heures"


def test_no_page_or_message_writes_a_count_with_s_in_brackets():
    """The pattern is gone from what people read: templates, and the French messages of the
    code (a regression guard). English log lines for operators (« %d token(s) ») may keep it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"\w\((?:s|es|e)\)")
    found = []
    for folder, suffixes in (("authserver", {".py"}), ("templates", {".html", ".txt"})):
        for path in (root / folder).rglob("*"):
            if path.suffix in suffixes and path.name != "plural.py":
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    english_log = "%d" in line or "%s(s)" in line
                    if pattern.search(line) and "http(s)" not in line and not english_log:
                        found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert found == []
