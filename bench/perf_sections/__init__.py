"""Sections of ``bench/perf.py``: one module per package, each exposing ``run(ctx)``.

A section returns a list of :class:`perf_sections.base.Figure`; keys are stable
(``<section>.<what>``) so that JSON files from different runs can be compared.
"""

SECTIONS = ("bnn_core", "attacks", "channels", "robust_vi", "reactive")
