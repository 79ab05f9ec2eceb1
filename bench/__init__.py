"""Benchmarks of authserver on this machine: ``python -m bench`` (``make bench``).

Each benchmark is a module with ``NAME`` and ``run(options) -> Report`` listed in
``bench.__main__.BENCHMARKS``. Their harness: :mod:`bench.server` starts a real
``authserver serve``, :mod:`bench.load` drives it over keep-alive HTTP (:mod:`bench.client`)
and measures the CPU of everyone involved (:mod:`bench.cpu`), :mod:`bench.report` makes the
table and the JSON and describes the machine.
"""
