"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print a table.

Full runs write ``bench/results/<name>.json`` (figures + the machine's description).
``--quick`` runs a few seconds per benchmark to prove the harness works; its JSON goes to a
temporary directory unless ``--results-dir`` is given, so it never replaces real figures.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

from bench.report import (
    NOISY_CORES,
    RESULTS_DIR,
    TABLE_HEADER,
    Options,
    log,
    machine,
    table,
    write_json,
)

# name -> module with NAME and run(options) -> Report. Add passkey_login, forward_auth here.
BENCHMARKS: dict[str, str] = {
    "password_login": "bench.password_login",
    "console_queries": "bench.console_queries",
    "forward_auth": "bench.forward_auth",  # issue 6
    "passkey_login": "bench.passkey_login",  # issue 3
    "suite": "bench.suite",  # issue 7: every login path on SQLite and PostgreSQL + Redis
    "new_browser": "bench.new_browser",  # issue 13: new browsers, returning ones, mail backlog
    "retention_purge": "bench.retention_purge",  # issue 15: logins while 10 M rows are purged
    "mail_delivery": "bench.mail_delivery",  # issue 13: the CPU of one alert e-mail delivered
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per HTTP scenario"
    )
    parser.add_argument(
        "--max-operations", type=int, default=1_000_000, help="cap of operations per scenario"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument(
        "--engine", choices=("granian", "gunicorn"), default="granian", help="serve --engine"
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        quick=args.quick,
        connections=args.connections,
        duration=args.duration,
        max_operations=args.max_operations,
        workers=args.workers,
        threads=args.threads,
        engine=args.engine,
    )
    results_dir = args.results_dir
    if results_dir is None:
        results_dir = (
            Path(tempfile.gettempdir()) / "authserver-bench-quick" if args.quick else RESULTS_DIR
        )
    description = machine()
    log(
        f"machine: {description['cpu_model']}, {description['usable_cores']} core(s), "
        f"Python {description['python']}, SQLite {description['sqlite']}, "
        f"load average {description['load_average_at_start']}"
    )
    rows = []
    for name in args.only or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        started = time.perf_counter()
        report = module.run(options)
        took = round(time.perf_counter() - started, 1)
        path = results_dir / f"{report.name}.json"
        write_json(
            path,
            {
                "benchmark": report.name,
                "quick": options.quick,
                "took_s": took,
                "machine": description,
                **report.data,
            },
        )
        log(f"[{report.name}] done in {took} s -> {path}")
        problems = report.data.get("server_log_problems")
        if problems:
            log(f"[{report.name}] server log:\n  " + "\n  ".join(problems))
        rows.extend([[f"{report.name}: {row[0]}", *row[1:]] for row in report.rows])
    print(table(rows, TABLE_HEADER))
    if any(str(row[-1]).endswith("!") for row in rows):
        print(
            f"! other processes used more than {NOISY_CORES} core during this measurement: "
            "figure lowered by the machine's other load, run again on a quiet machine"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
