"""The four documents of the « Contrat de Sécurisation Professionnelle » kit (seed).

The sizes shown are those of the official documents; the files served here are small
placeholder PDFs generated at start-up (the real ones belong to France Travail).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    slug: str
    name: str
    size: str  # as the seed shows it


DOCUMENTS = (
    Document("document-information", "Le document d'information", "332 Ko"),
    Document("notice-information-salarie", "La notice d'information salarié", "688 Ko"),
    Document("bulletin-acceptation", "Le bulletin d'acceptation", "596 Ko"),
    Document("demande-allocations", "La demande d'allocations", "869 Ko"),
)
BY_SLUG = {document.slug: document for document in DOCUMENTS}


def _pdf_text(text: str) -> str:
    """PDF string literal in WinAnsi (Latin-1 covers the French text here)."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def placeholder_pdf(title: str) -> bytes:
    """A one-page PDF 1.4 with the document's title: valid, tiny, no dependency."""
    lines = [
        title,
        "Contrat de Sécurisation Professionnelle (CSP)",
        "Document de démonstration : le document officiel est fourni par France Travail.",
    ]
    text = ["BT", "/F1 18 Tf", "72 760 Td", f"({_pdf_text(lines[0])}) Tj", "/F1 11 Tf"]
    for line in lines[1:]:
        text += ["0 -28 Td", f"({_pdf_text(line)}) Tj"]
    text.append("ET")
    stream = "\n".join(text).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def build_files() -> dict[str, bytes]:
    return {document.slug: placeholder_pdf(document.name) for document in DOCUMENTS}
