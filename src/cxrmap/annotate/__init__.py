"""Collaborative human-machine ground-truth annotation (paper Sec. II-B, Fig. 4).

Stage I: doctors' hand-drawn masks exist for a subset; several networks are trained on them in k-fold
cross-validation, and each image gets the masks of the networks that did not see it, plus its manual mask.
Doctors see them blinded (labelled A, B, C... in a shuffled order) and choose the best. Stage II: several
networks are trained on the chosen masks and predict masks for the unannotated images; doctors choose the
best or reject them all and draw the mask themselves. Stage II repeats until every image has an accepted
mask; the export is a QaTa-COV19-style data set with a provenance manifest.

Modules: :mod:`~cxrmap.annotate.db` (tables, schema version), :mod:`~cxrmap.annotate.auth` (accounts,
sessions, CSRF, rate limits), :mod:`~cxrmap.annotate.masks` (mask files, RLE/PNG uploads, Dice),
:mod:`~cxrmap.annotate.projects` (import), :mod:`~cxrmap.annotate.workflow` (stages, reviews, acceptance),
:mod:`~cxrmap.annotate.training` (the networks' training hook), :mod:`~cxrmap.annotate.jobs` (background
worker), :mod:`~cxrmap.annotate.stats` (dashboard), :mod:`~cxrmap.annotate.export`,
:mod:`~cxrmap.annotate.api` / :mod:`~cxrmap.annotate.app` (the FastAPI server) and
:mod:`~cxrmap.annotate.simulate` (simulated reviewers on phantoms).
"""
