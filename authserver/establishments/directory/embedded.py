"""The embedded directory: ``authserver/data/establishments.json`` (no network)."""

from __future__ import annotations

import json
from pathlib import Path

from authserver.establishments.directory.model import (
    DEFAULT_EMBEDDED_PATH,
    Establishment,
)
from authserver.establishments.siret import normalize


class EmbeddedDirectory:
    """The establishments of a JSON file (``{"establishments": [{...}, ...]}``), read once."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else DEFAULT_EMBEDDED_PATH
        with self.path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        rows = document.get("establishments") if isinstance(document, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f"{self.path}: expected an object with an 'establishments' list")
        self._by_siret: dict[str, Establishment] = {}
        for index, row in enumerate(rows):
            try:
                found = Establishment(**row)
            except TypeError as exc:
                raise ValueError(f"{self.path}: entry {index}: {exc}") from None
            self._by_siret[found.siret] = found

    def entries(self) -> list[Establishment]:
        """Every establishment of the file, in its order (the first is the demo default)."""
        return list(self._by_siret.values())

    def lookup(self, siret: str) -> Establishment | None:
        return self._by_siret.get(normalize(siret))


# --- HTTP ---------------------------------------------------------------------------------
