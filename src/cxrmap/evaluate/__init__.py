"""Evaluation (paper Sec. III): pixel and image metrics with Eq. 13 intervals, Tables I/III/IV, curves,
detection by subgroup; :mod:`~cxrmap.evaluate.evaluation` runs a model over held-out images."""
