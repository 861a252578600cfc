"""Everything on disk: path layout, the Arrow schema, atomic shard writes, manifests, verify, reading back."""
