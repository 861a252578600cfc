"""Bench-only (`bench.py --case feeder`): the local encoder's model forward becomes a no-op.

Active only in processes that have this folder on PYTHONPATH and CHATSPACE_BENCH_NOOP_FORWARD=1 (the
feeder case sets both for its `chatspace embed-hf` run, whose spawned workers inherit them). Everything
around the forward still runs: reading, sampling, extraction, tokenizing, bucketing, batching and
padding, the hand-over of each batch, and writing shards; each batch's vectors come back as zeros.
"""

import os


def _no_forward(self, features):
    import torch

    return torch.zeros((features["input_ids"].shape[0], self.dimension), dtype=torch.float32)


if os.environ.get("CHATSPACE_BENCH_NOOP_FORWARD") == "1":
    from chatspace.encoders import sentence_transformer

    sentence_transformer.SentenceTransformerEncoder._embed = _no_forward
