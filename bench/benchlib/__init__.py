"""Helpers shared by the benchmark and reproduction scripts in ``bench/``."""
