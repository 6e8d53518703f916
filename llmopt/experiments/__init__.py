"""Experiments: one run from options (``runs``), grids of runs (``grid``, ``compare``), their
tables (``report``), figures (``plot``) and progress display (``progress``)."""
