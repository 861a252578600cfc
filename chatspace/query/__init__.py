"""Asking the vectors: search (exact or through an ANN index), the index itself, near-duplicates and
labelled clusters, over the runs an output root holds (local or an object store)."""
