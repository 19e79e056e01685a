"""Shared test set-up."""
import pytest

import ptpm_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test file imports TensorFlow)


@pytest.fixture(autouse=True)
def _isolated_dataset_cache(tmp_path_factory, monkeypatch):
    """Loaders cache parsed CSVs beside the data; tests must not leave caches in the
    checkout (a second run would then read them), so each test caches in a temp folder.
    Tests of the cache location itself override this with their own monkeypatching."""
    monkeypatch.setenv("PTPM_TF_CACHE_DIR", str(tmp_path_factory.mktemp("ptpm-cache")))
