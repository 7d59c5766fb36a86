"""Shared fixtures: a small default dataset and a tiny model trained on it."""
import pytest

import make_default_data
import train_facade_text


@pytest.fixture(scope='session')
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    make_default_data.generate(str(root), train_per_char=2, test_per_char=1, size=128, seed=0)
    return root


@pytest.fixture(scope='session')
def tiny_model(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('model')
    code = train_facade_text.main(['-i', str(small_data), '-o', str(out), '--width', '8', '--size', '128',
                                   '--iteration', '6', '--snapshot_interval', '3', '--display_interval', '3',
                                   '--lr', '2e-4', '--tag-dim', '16'])
    assert code == 0
    return out
