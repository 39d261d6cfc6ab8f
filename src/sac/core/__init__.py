"""Primitives every other package builds on; they import nothing else from sac."""
