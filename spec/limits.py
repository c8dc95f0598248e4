"""Limits of an app spec, in a module of their own: the CLI checks a spec's size before
sending it and must not load the spec models (pydantic) to know the number."""

MAX_SPEC_BYTES = 256 * 1024
