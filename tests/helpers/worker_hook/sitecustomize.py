"""Test-only faults and holds in a worker process, each active only where its variable is set and this
folder is on PYTHONPATH; it patches SentenceTransformerEncoder when that module is first imported.

- Die outright (SIGKILL) when preparing a text holding a marker (CHATSPACE_TEST_CRASH_MARKER), or when
  loading the model while a file exists (CHATSPACE_TEST_CRASH_ON_LOAD_IF): stand-ins for what cannot be
  produced on demand here, a row that crashes native code (a tokenizer segfault, a CUDA fault), a device
  that is gone.
- Hold at the next text while a file exists (CHATSPACE_TEST_HOLD_WHILE), so a test can take a worker (or
  its node) down while it certainly holds units, however fast or loaded the machine is, and let the run
  go on when it removes the file. On entering the hold, a worker says who it is in `<file>.<pid>.json`:
  its pid and, in a Ray actor, its Ray actor and node ids, read inside the worker rather than from the
  manifest the run writes.
"""

import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time

MARKER = os.environ.get("CHATSPACE_TEST_CRASH_MARKER")
LOAD_FLAG = os.environ.get("CHATSPACE_TEST_CRASH_ON_LOAD_IF")
HOLD = os.environ.get("CHATSPACE_TEST_HOLD_WHILE")
TARGET = "chatspace.encoders.sentence_transformer"


def _announce() -> None:
    """`<HOLD>.<pid>.json`, written once per process, whole (renamed into place)."""
    path = f"{HOLD}.{os.getpid()}.json"
    if os.path.exists(path):
        return
    me = {"pid": os.getpid()}
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            context = ray.get_runtime_context()
            me.update(ray_actor_id=context.get_actor_id(), ray_node_id=context.get_node_id())
    with open(path + ".tmp", "w") as fh:
        json.dump(me, fh)
    os.replace(path + ".tmp", path)


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

            def patched_prepare(self, texts, stats):
                if HOLD and os.path.exists(HOLD):
                    _announce()
                    while os.path.exists(HOLD):
                        time.sleep(0.05)
                if MARKER and any(MARKER in t for t in texts):
                    os.kill(os.getpid(), signal.SIGKILL)
                return prepare(self, texts, stats)

            def patched_load(self, *args, **kwargs):
                if LOAD_FLAG and os.path.exists(LOAD_FLAG):
                    os.kill(os.getpid(), signal.SIGKILL)
                return load(self, *args, **kwargs)

            cls.prepare, cls.load = patched_prepare, patched_load

        spec.loader.exec_module = exec_module
        return spec


if MARKER or LOAD_FLAG or HOLD:
    sys.meta_path.insert(0, _PatchOnImport())
