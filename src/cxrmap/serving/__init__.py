"""The servers: the clinical demo page (:mod:`~cxrmap.serving.demo`), the collaborative annotation server
(:mod:`~cxrmap.serving.annotate`), and what both stand on (:mod:`~cxrmap.serving.http`: the error shape,
security headers, body limits, upload checks, host checks).

Requires the ``web`` extra (``pip install 'cxrmap[web]'``).
"""
