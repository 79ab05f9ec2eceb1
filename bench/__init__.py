"""Benchmarks of authserver on this machine: ``python -m bench`` (``make bench``).

Each benchmark is a module with ``NAME`` and ``run(options) -> Report`` listed in
``bench.__main__.BENCHMARKS``; the harness (:mod:`bench.harness`) starts a real
``authserver serve``, drives it over keep-alive HTTP and describes the machine.
"""
