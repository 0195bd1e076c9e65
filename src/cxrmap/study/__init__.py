"""Studies: cross-validation of any model grid (:mod:`~cxrmap.study.cv`) and the whole run of
``cxrmap run`` (:mod:`~cxrmap.study.run`: data, cross-validation, maps, activation maps, report)."""
