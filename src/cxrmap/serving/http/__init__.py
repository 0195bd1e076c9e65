"""What every cxrmap server shares: the JSON error shape and status map (:mod:`~cxrmap.serving.http.errors`),
security headers, request ids, logging and the body cap (:mod:`~cxrmap.serving.http.middleware`), upload
checks (:mod:`~cxrmap.serving.http.uploads`) and the Host check (:mod:`~cxrmap.serving.http.hosts`)."""
