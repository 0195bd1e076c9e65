"""Collaborative human-machine ground-truth annotation (paper Sec. II-B, Fig. 4).

Stage I: doctors' hand-drawn masks exist for a subset; several networks are trained on them in k-fold
cross-validation, and each image gets the masks of the networks that did not see it, plus its manual mask.
Doctors see them blinded (labelled A, B, C... in a shuffled order) and choose the best. Stage II: several
networks are trained on the chosen masks and predict masks for the unannotated images; doctors choose the
best or reject them all and draw the mask themselves. Stage II repeats until every image has an accepted
mask; the export is a QaTa-COV19-style data set with a provenance manifest.

Modules (all under ``cxrmap.serving.annotate``): ``db`` (tables, schema version), ``auth`` (accounts,
sessions, CSRF, login limits), ``masks`` (mask files, RLE/PNG uploads, Dice), ``projects`` (import),
``workflow`` (stages, reviews, acceptance), ``training`` (the networks' training hook), ``jobs`` (background
worker), ``stats`` (dashboard), ``export``, ``api`` / ``app`` (the FastAPI server: one router per concern)
and ``simulate`` (simulated reviewers on phantoms).
"""
