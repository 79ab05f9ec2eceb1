"""``python -m examples.csp_kit``: serve the CSP kit on CSPKIT_BASE_URL's port (own process)."""

from __future__ import annotations

import os
import sys

from werkzeug.serving import run_simple

from examples.csp_kit import ConfigError, create_app


def main() -> int:
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"csp_kit : configuration invalide — {exc}", file=sys.stderr)
        return 2
    config = app.config["CSPKIT"]
    host = os.environ.get("CSPKIT_HOST", "127.0.0.1")
    print(f"csp_kit : {config.base_url} (écoute sur {host}:{config.port})", flush=True)
    run_simple(host, config.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
