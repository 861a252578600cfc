"""Everything in the output root, a local folder or an object store (root.py, over fsspec): path layout,
the Arrow schema, atomic shard writes, manifests and unit records, verify, reading back."""
