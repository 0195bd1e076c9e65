"""Prediction: the one forward pass (:mod:`~cxrmap.predict.inference`), detection (Sec. II-D), severity,
infection maps (Sec. II-E, Fig. 5) and :class:`~cxrmap.predict.predictor.Predictor`, which joins them."""
