"""Web side of cxrmap: the clinical demo page and JSON API (:mod:`cxrmap.serving.demo.app`), and the security
pieces every cxrmap server shares (:mod:`cxrmap.serving.http.security`: headers, request-size limit, upload checks,
JSON errors).

Requires the ``web`` extra (``pip install 'cxrmap[web]'``); nothing is imported until used.
"""
