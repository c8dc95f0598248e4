"""Shared by the benchmarks; `make bench` runs bench/*.py only, never this package."""
