"""The bottom layer: errors, crash-safe files, images as bytes, and the runtime (device, precision).

Nothing here knows about chest X-rays; every other layer may import it.
"""
