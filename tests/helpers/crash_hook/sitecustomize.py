"""Test-only: make a worker process die outright (SIGKILL) when it prepares a text holding a marker
(CHATSPACE_TEST_CRASH_MARKER), or when it loads its model while a file exists
(CHATSPACE_TEST_CRASH_ON_LOAD_IF).

Stands in for what cannot be produced on demand here: a row that crashes native code (a tokenizer
segfault, a CUDA fault), a device that is gone. Active only where those variables are set and this
folder is on PYTHONPATH; it patches SentenceTransformerEncoder when that module is first imported.
"""

import importlib.abc
import importlib.util
import os
import signal
import sys

MARKER = os.environ.get("CHATSPACE_TEST_CRASH_MARKER")
LOAD_FLAG = os.environ.get("CHATSPACE_TEST_CRASH_ON_LOAD_IF")
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
            prepare, load = cls.prepare, cls.load

            def crashing_prepare(self, texts, stats):
                if MARKER and any(MARKER in t for t in texts):
                    os.kill(os.getpid(), signal.SIGKILL)
                return prepare(self, texts, stats)

            def crashing_load(self, *args, **kwargs):
                if LOAD_FLAG and os.path.exists(LOAD_FLAG):
                    os.kill(os.getpid(), signal.SIGKILL)
                return load(self, *args, **kwargs)

            cls.prepare, cls.load = crashing_prepare, crashing_load

        spec.loader.exec_module = exec_module
        return spec


if MARKER or LOAD_FLAG:
    sys.meta_path.insert(0, _PatchOnImport())
