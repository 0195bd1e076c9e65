"""Collaborative human-machine ground-truth annotation (paper Sec. II-B, Fig. 4).

Stage I: doctors' hand-drawn masks exist for a subset; several networks are trained on them in k-fold
cross-validation, and each image gets the masks of the networks that did not see it, plus its manual mask.
Doctors see them blinded (labelled A, B, C... in a shuffled order) and choose the best. Stage II: several
networks are trained on the chosen masks and predict masks for the unannotated images; doctors choose the
best or reject them all and draw the mask themselves. Stage II repeats until every image has an accepted
mask; the export is a QaTa-COV19-style data set with a provenance manifest.

Modules: :mod:`~cxrmap.serving.annotate.db` (tables, schema version), :mod:`~cxrmap.serving.annotate.auth` (accounts,
sessions, CSRF, rate limits), :mod:`~cxrmap.serving.annotate.masks` (mask files, RLE/PNG uploads, Dice),
:mod:`~cxrmap.serving.annotate.projects` (import), :mod:`~cxrmap.serving.annotate.workflow` (stages, reviews, acceptance),
:mod:`~cxrmap.serving.annotate.training` (the networks' training hook), :mod:`~cxrmap.serving.annotate.jobs` (background
worker), :mod:`~cxrmap.serving.annotate.stats` (dashboard), :mod:`~cxrmap.serving.annotate.export`,
:mod:`~cxrmap.serving.annotate.api` / :mod:`~cxrmap.serving.annotate.app` (the FastAPI server) and
:mod:`~cxrmap.serving.annotate.simulate` (simulated reviewers on phantoms).
"""
