"""Every derived cache is keyed on the versions of what produced it: bumping the lung mask's
version makes each of them (QCT rows, radiomics features, model inputs) stale, so the next
run computes them again instead of reusing them."""

from __future__ import annotations

import numpy as np
import pytest

from sscmort_core import store as st
from sscmort_core.deep import inputs
from sscmort_core.lungs import qct_method_version, segmentation
from sscmort_core.radiomics import features


@pytest.fixture()
def bumped(monkeypatch):
    """Pretend the lung mask changed (as a new segmentation release would)."""
    def bump() -> None:
        monkeypatch.setattr(segmentation, "LUNG_MASK_VERSION", "lungmask-test-bump")
    return bump


def test_qct_rows_of_an_older_mask_are_stale(tiny_store, bumped):
    with st.open_store(tiny_store) as s:
        assert st.scans_missing_qct(s, qct_method_version()) == []
        before = qct_method_version()
        bumped()
        assert qct_method_version() != before
        stale = st.scans_missing_qct(s, qct_method_version())
        assert sorted(stale) == sorted(st.scans_frame(s)["scan_id"])  # every row is stale


def test_radiomics_parameter_hash_follows_the_mask(bumped):
    before = features.load_params().param_hash
    bumped()
    after = features.load_params().param_hash  # not served from the parameter cache
    assert after != before
    assert features.params_from_text(features.load_params().text).param_hash == after


def test_model_input_cache_follows_the_mask(tiny_store, tmp_path, bumped):
    with st.open_store(tiny_store) as s:
        first = inputs.model_inputs(s, k=2, size=16, cache_dir=tmp_path)
        calls: list[int] = []
        again = inputs.model_inputs(s, k=2, size=16, cache_dir=tmp_path,
                                    progress=lambda stage, done, total: calls.append(total))
        assert calls == []  # served from the cache: nothing computed
        bumped()
        recomputed: list[int] = []
        third = inputs.model_inputs(s, k=2, size=16, cache_dir=tmp_path,
                                    progress=lambda stage, done, total: recomputed.append(total))
    assert max(recomputed) == len(first.scan_ids)  # every scan computed again
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.x, third.x)  # same mask code: same inputs
    assert len(list(tmp_path.glob("*.npy"))) == 2  # one cache file per mask version
