"""The clinical demo page and JSON API (:mod:`cxrmap.serving.demo.app`), on the shared HTTP layer of
:mod:`cxrmap.serving.http` (errors, headers, request ids, body cap, upload checks).

Requires the ``web`` extra (``pip install 'cxrmap[web]'``); nothing is imported until used.
"""
