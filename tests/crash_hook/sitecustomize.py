"""Test-only: make a worker process die outright (SIGKILL) when it prepares a text holding a marker.

Stands in for what cannot be produced on demand here: a row that crashes native code (a tokenizer
segfault, a CUDA fault). Active only where CHATSPACE_TEST_CRASH_MARKER is set and this folder is on
PYTHONPATH; it patches SentenceTransformerEncoder.prepare when that module is first imported.
"""

import importlib.abc
import importlib.util
import os
import signal
import sys

MARKER = os.environ.get("CHATSPACE_TEST_CRASH_MARKER")
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
            cls = module.SentenceTransformerEncoder
            prepare = cls.prepare

            def crashing_prepare(self, texts, stats):
                if any(MARKER in t for t in texts):
                    os.kill(os.getpid(), signal.SIGKILL)
                return prepare(self, texts, stats)

            cls.prepare = crashing_prepare

        spec.loader.exec_module = exec_module
        return spec


if MARKER:
    sys.meta_path.insert(0, _PatchOnImport())
