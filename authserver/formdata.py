"""Form bodies read as named fields only (issue 11, found by fuzzing).

A multipart part must have a name (RFC 7578 §4.2); werkzeug keeps one without it under the
key ``None``. Code walking ``request.form`` expects ``str`` keys: Flask-WTF's CSRF check,
run before every protected POST, called ``None.endswith()`` (a 500). Such parts are no form
field, so the app's request class drops them as the body is parsed, once for every reader.
"""

from __future__ import annotations

from typing import IO, Any

from flask import Request as FlaskRequest
from werkzeug.formparser import FormDataParser


class NamedFieldsParser(FormDataParser):
    """werkzeug's form parser, without the fields and files that have no name."""

    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> Any:
        stream, form, files = super().parse(stream, mimetype, content_length, options)
        return stream, self._named(form), self._named(files)

    def _named(self, values: Any) -> Any:
        if None not in values:
            return values
        return self.cls((key, value) for key, value in values.items(multi=True) if key is not None)


class Request(FlaskRequest):
    """The app's request class (``create_app`` sets it)."""

    form_data_parser_class = NamedFieldsParser
