"""The kit's documents are well-formed PDFs of the guide's weights (examples/csp_kit)."""

from __future__ import annotations

import re

import pytest

from examples.csp_kit.documents import DOCUMENTS, build_pdf, human_size


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.slug)
def test_a_real_pdf_of_the_guides_weight(document) -> None:
    pdf = build_pdf(document)
    assert len(pdf) == document.kib * 1024 and human_size(len(pdf)) == f"{document.kib} Ko"
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    # The cross-reference table points at each object, and startxref at the table.
    startxref = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", pdf).group(1))
    assert pdf[startxref:].startswith(b"xref\n")
    count = int(re.match(rb"xref\n0 (\d+)\n", pdf[startxref:]).group(1))
    entries = re.findall(rb"(\d{10}) 00000 n \n", pdf[startxref:])
    assert len(entries) == count - 1
    for number, offset in enumerate(entries, start=1):
        assert pdf[int(offset) :].startswith(b"%d 0 obj\n" % number)
    # Every stream's declared length is its length.
    for length, body in re.findall(rb"/Length (\d+) >>\nstream\n(.*?)\nendstream", pdf, re.S):
        assert int(length) == len(body)
    assert pdf.count(b"/Type /Page ") == len(document.pages)
    assert document.name.encode("cp1252") in pdf  # its title, in the text and the metadata


def test_sizes_read_as_in_french() -> None:
    assert human_size(999) == "999 octets"
    assert human_size(339_968) == "332 Ko"
    assert human_size(3 * 1024 * 1024 + 200_000) == "3,2 Mo"
