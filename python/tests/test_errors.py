"""Bad input raises ValueError or TypeError with the command line's message."""

import numpy as np
import pytest

import latentlab as ll


def test_messages_match_the_cli(cli, tmp_path):
    mu = np.zeros((10, 3))
    lv = np.zeros((10, 4))
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "lv.npy", lv)
    p = cli("diagnose", "--mu", tmp_path / "mu.npy", "--logvar", tmp_path / "lv.npy", check=False)
    assert p.returncode != 0
    with pytest.raises(ValueError) as e:
        ll.diagnose(mu, lv)
    assert str(e.value) in p.stderr
    p = cli("embed", "--latents", tmp_path / "mu.npy", "--method", "spectral", check=False)
    with pytest.raises(ValueError) as e:
        ll.embed(mu, "spectral")
    assert str(e.value) in p.stderr
    assert "unknown method `spectral`" in str(e.value)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="must have the same shape"):
        ll.diagnose(np.zeros((5, 2)), np.zeros((6, 2)))
    bad = np.zeros((20, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="(?i)nan|finite"):
        ll.diagnose(bad, np.zeros((20, 2)))
    with pytest.raises(ValueError, match="--z1 and --z2 differ in length"):
        ll.interpolate(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="--method"):
        ll.interpolate(np.zeros(3), np.ones(3), method="cubic")
    with pytest.raises(ValueError, match="expected a 2-D array"):
        ll.diagnose(np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError, match="real numbers"):
        ll.embed(np.array([["a", "b"]] * 5), "pca")
    with pytest.raises(ValueError, match="--perplexity"):
        ll.embed(np.random.default_rng(0).normal(size=(10, 3)), "tsne", perplexity=50)
    with pytest.raises(ValueError, match="--neighbors"):
        ll.embed(np.random.default_rng(0).normal(size=(10, 3)), "umap", neighbors=1)
    with pytest.raises(ValueError, match="--sap"):
        ll.disentanglement(np.zeros((10, 2)), np.zeros((10, 1)), sap="svm")
    with pytest.raises(ValueError, match="--dims"):
        ll.shell_stats([0])
    with pytest.raises(ValueError, match="unknown model"):
        ll.train(np.zeros((8, 4, 4), np.float32), model="gan", progress=False)
    with pytest.raises(ValueError, match="unexpected argument|--no-such-flag"):
        ll.train(np.zeros((8, 4, 4), np.float32), no_such_flag=3, progress=False)
