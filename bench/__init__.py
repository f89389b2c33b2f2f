"""Benchmarks: ``python -m bench.run`` (``make bench``) measures the issue's goals in one run.

A package so that a worker can load ``bench.noop_app`` with ``celery -A`` from the repository root.
Not part of the installed distribution (pyproject.toml packages only production code and devtools).
"""
