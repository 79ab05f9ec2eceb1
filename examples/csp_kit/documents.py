"""The four documents of the « Contrat de Sécurisation Professionnelle » kit (seed).

The official PDFs belong to France Travail; the kit builds stand-ins at start-up: real,
multi-page PDF 1.4 files (the document's text, the forms' boxes, a scanned-paper background
as the printed originals have) of the weights the guide shows (332, 688, 596 and 869 Ko).
The page shows each file's weight computed from the bytes it serves (``human_size``), never a
figure written by hand. No dependency: the PDF is written here.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass

# Form fields (label, lines to fill) and paragraphs: (kind, text).
Block = tuple[str, str]


@dataclass(frozen=True)
class Document:
    slug: str
    name: str
    # The weight of the original, as the guide shows it (Ko of 1,024 bytes): the stand-in is
    # built to weigh the same.
    kib: int
    pages: tuple[tuple[Block, ...], ...]


def human_size(size: int) -> str:
    """« 332 Ko »: Ko of 1,024 bytes, as file managers show them in French."""
    if size < 1024:
        return f"{size} octets"
    kib = round(size / 1024)
    if kib < 1024:
        return f"{kib} Ko"
    return f"{size / 1024 / 1024:.1f} Mo".replace(".", ",")


INTRO = (
    "Le contrat de sécurisation professionnelle (CSP) est proposé par l'employeur à chaque "
    "salarié dont il envisage le licenciement pour motif économique, dans les entreprises de "
    "moins de 1 000 salariés et dans celles en redressement ou en liquidation judiciaire."
)

DOCUMENTS = (
    Document(
        "document-information",
        "Le document d'information",
        332,
        (
            (
                ("title", "Contrat de sécurisation professionnelle"),
                ("subtitle", "Document d'information remis au salarié"),
                ("p", INTRO),
                ("h", "Ce que vous propose le CSP"),
                (
                    "p",
                    "Pendant 12 mois, un conseiller vous accompagne individuellement : bilan de "
                    "votre situation, projet professionnel, formations, périodes de travail en "
                    "entreprise. Vous percevez l'allocation de sécurisation professionnelle "
                    "(ASP) à la place de l'allocation d'aide au retour à l'emploi.",
                ),
                ("h", "Votre délai de réflexion"),
                (
                    "p",
                    "Vous disposez de 21 jours à compter de la remise de ce document pour "
                    "accepter ou refuser le CSP. Sans réponse de votre part à la fin de ce "
                    "délai, vous êtes réputé l'avoir refusé.",
                ),
            ),
            (
                ("h", "Si vous acceptez"),
                (
                    "p",
                    "Vous remettez à votre employeur le bulletin d'acceptation complété et "
                    "signé, accompagné de la demande d'allocations et d'une pièce d'identité. "
                    "Votre contrat de travail est rompu d'un commun accord à la fin du délai "
                    "de réflexion : vous n'effectuez pas de préavis.",
                ),
                ("h", "Si vous refusez"),
                (
                    "p",
                    "La procédure de licenciement pour motif économique se poursuit. Vous "
                    "pourrez vous inscrire comme demandeur d'emploi à la fin de votre contrat.",
                ),
                ("h", "Pour en savoir plus"),
                (
                    "p",
                    "Votre conseiller France Travail répond à vos questions au 39 49, du lundi "
                    "au vendredi de 8h30 à 17h. Document de démonstration : le document "
                    "officiel est fourni par France Travail.",
                ),
            ),
        ),
    ),
    Document(
        "notice-information-salarie",
        "La notice d'information salarié",
        688,
        (
            (
                ("title", "Contrat de sécurisation professionnelle"),
                ("subtitle", "Notice d'information du salarié"),
                ("p", INTRO),
                ("h", "1. L'accompagnement"),
                (
                    "p",
                    "Dans les 8 jours qui suivent votre adhésion, un entretien individuel de "
                    "pré-bilan fait le point sur vos compétences et votre projet. Un plan de "
                    "sécurisation professionnelle est ensuite établi avec votre conseiller : "
                    "mesures d'appui social et psychologique, orientation, validation des "
                    "acquis de l'expérience, formations, périodes de travail.",
                ),
                ("h", "2. L'allocation de sécurisation professionnelle"),
                (
                    "p",
                    "Si vous justifiez d'au moins un an d'ancienneté dans l'entreprise, l'ASP "
                    "est égale à 75 % de votre salaire journalier de référence. Sinon, son "
                    "montant est celui de l'allocation d'aide au retour à l'emploi.",
                ),
            ),
            (
                ("h", "3. Les périodes de travail"),
                (
                    "p",
                    "Pendant le CSP, vous pouvez travailler en CDD ou en contrat de travail "
                    "temporaire de 3 jours au moins : le versement de l'ASP est alors "
                    "suspendu, et le CSP prolongé d'autant, dans la limite de 3 mois.",
                ),
                ("h", "4. La reprise d'un emploi"),
                (
                    "p",
                    "Si vous retrouvez un emploi dont la rémunération est inférieure à votre "
                    "salaire antérieur, une indemnité différentielle de reclassement peut vous "
                    "être versée. Une prime au reclassement est possible si vous reprenez un "
                    "emploi durable avant la fin du 10e mois.",
                ),
            ),
            (
                ("h", "5. Vos obligations"),
                (
                    "p",
                    "Vous participez aux entretiens et aux actions prévus par votre plan, et "
                    "vous informez votre conseiller de tout changement de situation.",
                ),
                (
                    "p",
                    "Document de démonstration : le document officiel est fourni par France "
                    "Travail.",
                ),
            ),
        ),
    ),
    Document(
        "bulletin-acceptation",
        "Le bulletin d'acceptation",
        596,
        (
            (
                ("title", "Contrat de sécurisation professionnelle"),
                ("subtitle", "Bulletin d'acceptation"),
                ("p", "À remettre à votre employeur avant la fin du délai de réflexion."),
                ("h", "L'employeur"),
                ("field", "Raison sociale"),
                ("field", "Numéro SIRET"),
                ("field", "Adresse de l'établissement"),
                ("h", "Le salarié"),
                ("field", "Nom de naissance"),
                ("field", "Nom d'usage et prénom"),
                ("field", "Date de naissance"),
                ("field", "Numéro de sécurité sociale"),
                ("field", "Adresse"),
                ("h", "Acceptation"),
                (
                    "p",
                    "J'accepte le contrat de sécurisation professionnelle qui m'a été proposé le "
                    "............................ et j'ai pris connaissance du document "
                    "d'information et de la notice.",
                ),
                ("field", "Fait à, le"),
                ("box", "Signature du salarié"),
            ),
        ),
    ),
    Document(
        "demande-allocations",
        "La demande d'allocations",
        869,
        (
            (
                ("title", "Contrat de sécurisation professionnelle"),
                ("subtitle", "Demande d'allocation de sécurisation professionnelle"),
                ("h", "1. Votre identité"),
                ("field", "Nom de naissance"),
                ("field", "Nom d'usage"),
                ("field", "Prénoms"),
                ("field", "Date et lieu de naissance"),
                ("field", "Numéro de sécurité sociale"),
                ("field", "Nationalité"),
                ("h", "2. Vos coordonnées"),
                ("field", "Adresse"),
                ("field", "Code postal et commune"),
                ("field", "Téléphone"),
                ("field", "Adresse e-mail"),
            ),
            (
                ("h", "3. Votre situation"),
                ("field", "Dernier emploi occupé"),
                ("field", "Date d'entrée dans l'entreprise"),
                ("field", "Date de l'entretien préalable"),
                ("field", "Percevez-vous une pension d'invalidité ? (oui / non)"),
                ("field", "Exercez-vous une autre activité ? (oui / non)"),
                ("h", "4. Vos coordonnées bancaires"),
                ("field", "Titulaire du compte"),
                ("field", "IBAN"),
                ("field", "BIC"),
            ),
            (
                ("h", "5. Pièces à joindre"),
                (
                    "p",
                    "Une pièce d'identité, un relevé d'identité bancaire, l'attestation "
                    "employeur remise par votre employeur et, le cas échéant, les "
                    "justificatifs de vos autres activités.",
                ),
                ("h", "6. Engagement"),
                (
                    "p",
                    "Je certifie sur l'honneur l'exactitude des renseignements portés sur "
                    "cette demande et m'engage à signaler tout changement de situation.",
                ),
                ("field", "Fait à, le"),
                ("box", "Signature"),
                (
                    "p",
                    "Document de démonstration : le document officiel est fourni par France "
                    "Travail.",
                ),
            ),
        ),
    ),
)
BY_SLUG = {document.slug: document for document in DOCUMENTS}

# --- PDF writing ----------------------------------------------------------------------------

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4, in points
MARGIN = 64
TEXTURE_WIDTH = 1000  # pixels of the scanned-paper background (grey, 8 bits)
XMP_MIN_PADDING = 2048  # XMP recommends 2–4 KB of whitespace for in-place edits


def _pdf_text(text: str) -> bytes:
    """A PDF string literal's content in WinAnsiEncoding (cp1252: French fits, « œ » too)."""
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_content(document: Document, blocks: tuple[Block, ...], number: int, total: int) -> bytes:
    """The drawing of one page: the background, then text and form boxes from the top."""
    ops: list[bytes] = [b"q %d 0 0 %d 0 0 cm /Paper Do Q" % (PAGE_WIDTH, PAGE_HEIGHT)]
    # Header band and footer line, as the official forms have.
    ops.append(
        b"0 0 0.569 rg %d %d %d 6 re f" % (MARGIN, PAGE_HEIGHT - 48, PAGE_WIDTH - 2 * MARGIN)
    )
    ops.append(b"0.086 0.086 0.086 rg")  # the text: #161616, as the portal's
    y = PAGE_HEIGHT - 80

    def text(font: bytes, size: int, line: str, x: int = MARGIN) -> None:
        ops.append(b"BT /%s %d Tf %d %d Td (%s) Tj ET" % (font, size, x, y, _pdf_text(line)))

    for kind, value in blocks:
        if kind == "title":
            text(b"F2", 18, value)
            y -= 26
        elif kind == "subtitle":
            text(b"F1", 14, value)
            y -= 30
        elif kind == "h":
            y -= 6
            text(b"F2", 12, value)
            y -= 20
        elif kind == "p":
            for line in textwrap.wrap(value, 96):
                text(b"F1", 10, line)
                y -= 14
            y -= 8
        elif kind == "field":
            text(b"F1", 9, value)
            ops.append(b"0.4 G 0.5 w %d %d %d 18 re S" % (MARGIN, y - 22, PAGE_WIDTH - 2 * MARGIN))
            y -= 34
        elif kind == "box":
            text(b"F1", 9, value)
            ops.append(b"0.4 G 0.5 w %d %d 220 70 re S" % (MARGIN, y - 76))
            y -= 90
    ops.append(b"0.6 G 0.5 w %d 48 m %d 48 l S" % (MARGIN, PAGE_WIDTH - MARGIN))
    footer = f"{document.name[0].upper()}{document.name[1:]} — CSP — page {number} / {total}"
    y = 34
    text(b"F1", 8, footer)
    return b"\n".join(ops)


def _texture(seed: str, size: int) -> bytes:
    """Grey pixels between 236 and 255: the grain of a scanned sheet (deterministic)."""
    grain = bytes(236 + (value % 20) for value in range(256))
    return random.Random(seed).randbytes(size).translate(grain)


def _xmp(document: Document, padding: int) -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        b'<dc:title><rdf:Alt><rdf:li xml:lang="fr">'
        + document.name.encode()
        + b"</rdf:li></rdf:Alt></dc:title>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>\n" + b" " * padding + b'\n<?xpacket end="w"?>'
    )


def _assemble(document: Document, texture_rows: int, padding: int) -> bytes:
    pages = document.pages
    first_page = 8  # objects 1–7 below, then two per page (page, contents)
    kids = b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
    texture = _texture(document.slug, TEXTURE_WIDTH * texture_rows)
    xmp = _xmp(document, padding)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 6 0 R /Lang (fr-FR) >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length %d >>\nstream\n"
        % (TEXTURE_WIDTH, texture_rows, len(texture))
        + texture
        + b"\nendstream",
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(xmp)
        + xmp
        + b"\nendstream",
        b"<< /Title (%s) /Producer (Kit CSP - exemple authserver) >>" % _pdf_text(document.name),
    ]
    for number, blocks in enumerate(pages, start=1):
        content = _page_content(document, blocks, number, len(pages))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R "
            b"/F2 4 0 R >> /XObject << /Paper 5 0 R >> >> /Contents %d 0 R >>"
            % (PAGE_WIDTH, PAGE_HEIGHT, first_page + 2 * (number - 1) + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def build_pdf(document: Document) -> bytes:
    """The stand-in for ``document``, exactly ``document.kib`` × 1,024 bytes long: the
    background's rows take the bulk, the XMP packet's whitespace the last bytes."""
    target = document.kib * 1024
    bare = len(_assemble(document, 0, XMP_MIN_PADDING))
    rows = max(0, (target - bare - 16) // TEXTURE_WIDTH)
    padding = XMP_MIN_PADDING
    for _ in range(4):  # the lengths written in the file change by a digit at most
        built = _assemble(document, rows, padding)
        if len(built) == target:
            return built
        padding += target - len(built)
    return built


def build_files() -> dict[str, bytes]:
    return {document.slug: build_pdf(document) for document in DOCUMENTS}
