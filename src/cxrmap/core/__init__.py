"""The bottom layer: errors, crash-safe files, images as bytes, the runtime (device, precision), progress
output and the paper's citation.

Nothing here knows about chest X-rays; every other layer may import it.
"""
