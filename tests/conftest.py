"""Shared test set-up."""
import os

import pytest

import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test file imports TensorFlow)


@pytest.fixture(autouse=True)
def _isolated_dataset_cache(tmp_path_factory, monkeypatch):
    """Loaders cache parsed CSVs beside the data; tests must not leave caches in the
    checkout (a second run would then read them), so each test caches in a temp folder.
    Tests of the cache location itself override this with their own monkeypatching."""
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path_factory.mktemp("ptpm-cache")))


@pytest.fixture(autouse=True)
def _process_environment_restored():
    """``predict`` offline sets ``TF_CPU_ALLOCATOR_USE_BFC`` in the process environment;
    run in-process by a test, it must not reach the worker processes later tests start."""
    saved = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")
    yield
    if saved is None:
        os.environ.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    else:
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = saved


#: the files whose tests take longest (worker processes, trainings), collected first so that
#: under ``make test`` (pytest-xdist, ``--dist loadfile``) one process starts on them while
#: the other works through the rest, instead of one of them running alone at the end
_LONGEST_FIRST = ("test_distributed.py", "test_benchmark.py", "test_prepared.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)
    items.sort(key=rank)  # stable: the order inside each file is kept
