"""cxrmap: COVID-19 infection maps and detection from chest X-rays.

Implements and extends Degerli et al., "COVID-19 infection map generation and detection from chest X-ray
images", Health Information Science and Systems 9, 15 (2021) (:data:`cxrmap.core.citation.PAPER`):
encoder-decoder segmentation networks trained with a focal + dice loss,
infection maps painted onto the radiograph, detection from those maps, cross-validated evaluation with
confidence intervals, activation-map comparison and a human-machine collaborative annotation workflow.
"""

__version__ = "0.1.0"
