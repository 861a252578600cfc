"""Bench-only (`bench.py --case feeder`): the local encoder's model forward becomes a no-op.

Active only in processes that have this folder on PYTHONPATH and CHATSPACE_BENCH_NOOP_FORWARD=1 (the
feeder case sets both for its `chatspace embed-hf` run, whose spawned workers inherit them). Everything
around the forward still runs: reading, sampling, extraction, tokenizing, bucketing, batching and
padding, the hand-over of each batch, and writing shards; each batch's vectors come back as zeros.
"""

import importlib.abc
import importlib.util
import os
import sys

TARGET = "chatspace.encoders.sentence_transformer"


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)

            def no_forward(self, features):
                import torch

                rows = features["input_ids"].shape[0]
                return torch.zeros((rows, self.dimension), dtype=torch.float32)

            module.SentenceTransformerEncoder._embed = no_forward

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("CHATSPACE_BENCH_NOOP_FORWARD") == "1":
    sys.meta_path.insert(0, _PatchOnImport())
