"""URL rules whose builders are compiled when first used (a faster app start).

werkzeug compiles two URL builders for every rule when it is added — Python source made
from an AST, then ``compile`` — about 0.2 ms a rule: for our 98 rules, 19 of the 32 ms of
``create_app``. A worker builds URLs for a handful of its rules; every CLI
command, every worker start and each of the test suite's thousands of apps paid for all of
them. The builders made here are werkzeug's own, compiled at their first call instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule


class LazyBuilderRule(Rule):
    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compile_now = super()._compile_builder
        name = "_build_unknown" if append_unknown else "_build"

        def first_use(rule: Rule, /, **values: Any) -> tuple[str, str]:
            built = compile_now(append_unknown).__get__(rule, None)
            setattr(rule, name, built)  # the next calls go straight to it
            return built(**values)  # type: ignore[no-any-return]

        return first_use
