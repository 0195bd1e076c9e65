"""Data: readers of the real layouts, the phantom generator, the manifest, the cache, folds and balancing."""
