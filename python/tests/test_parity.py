"""Every array function returns what the command line returns on the same
input: the same numbers, to the last digit."""

import json

import numpy as np
import pytest

import latentlab as ll


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 6)) * 3
    mu = np.concatenate([c + rng.normal(size=(60, 6)) for c in centres])
    logvar = rng.normal(-1.0, 0.3, size=mu.shape)
    return mu, logvar


def test_interpolate_matches_cli(cli, tmp_path):
    z1 = np.linspace(-1, 2, 8)
    z2 = np.cos(np.arange(8.0))
    np.save(tmp_path / "a.npy", z1)
    np.save(tmp_path / "b.npy", z2)
    for method in ("linear", "slerp", "seed-slerp", "constant-norm"):
        out = tmp_path / f"{method}.npy"
        cli("interpolate", "--z1", tmp_path / "a.npy", "--z2", tmp_path / "b.npy",
            "--steps", 7, "--method", method, "--out", out)
        got = ll.interpolate(z1, z2, steps=7, method=method)
        np.testing.assert_array_equal(got, np.load(out))
    # f32 and F-ordered inputs go through the same code.
    np.testing.assert_array_equal(
        ll.interpolate(z1.astype(np.float32), z2, 7, "linear"),
        ll.interpolate(z1.astype(np.float32).astype(np.float64), z2, 7, "linear"),
    )


def test_shell_stats_matches_cli(cli):
    p = cli("geometry", "shell", "--dims", "1,2,10,512", "--json")
    assert ll.shell_stats([1, 2, 10, 512]) == json.loads(p.stdout)


def test_diagnose_matches_cli(cli, tmp_path, latents):
    mu, logvar = latents
    np.save(tmp_path / "mu.npy", mu)
    np.save(tmp_path / "lv.npy", logvar)
    p = cli("diagnose", "--mu", tmp_path / "mu.npy", "--logvar", tmp_path / "lv.npy",
            "--samples", 500, "--probes", 300, "--seed", 4, "--json")
    want = json.loads(p.stdout)
    got = ll.diagnose(mu, logvar, samples=500, probes=300, seed=4)
    assert got == want
    # Any memory order is read in place; a column-major matrix sums in
    # another order, so its figures agree to rounding, not to the digit.
    fortran = ll.diagnose(np.asfortranarray(mu), logvar, samples=500, probes=300, seed=4)
    for key, value in want.items():
        if isinstance(value, float):
            assert fortran[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        elif isinstance(value, list) and value and isinstance(value[0], float):
            assert fortran[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    f32 = ll.diagnose(mu.astype(np.float32), logvar.astype(np.float32), samples=500, probes=300, seed=4)
    assert set(f32) == set(want)


@pytest.mark.parametrize("method,extra", [
    ("pca", []),
    ("tsne", ["--iterations", "300", "--perplexity", "20"]),
    ("umap", ["--neighbors", "10"]),
])
def test_embed_matches_cli(cli, tmp_path, latents, method, extra):
    mu, _ = latents
    np.save(tmp_path / "x.npy", mu)
    out = tmp_path / "y.npy"
    p = cli("embed", "--latents", tmp_path / "x.npy", "--method", method, "--seed", 2,
            "--out", out, "--json", *extra)
    kw = {"tsne": dict(iterations=300, perplexity=20.0), "umap": dict(neighbors=10)}.get(method, {})
    calls = []
    y, ratio = ll.embed(mu, method, seed=2, return_ratio=True,
                        progress=lambda *a: calls.append(a), **kw)
    np.testing.assert_array_equal(y, np.load(out))
    doc = json.loads(p.stdout)
    assert ratio == doc["explained_variance_ratio"]
    assert ll.trustworthiness(mu, y, 10) == doc["trustworthiness10"]
    if method != "pca":
        assert calls and calls[-1][1] == calls[-1][2]
        assert [c[0] for c in calls if c[1] == 0][:2] == ["neighbours", "affinities"]
        y2, info = ll.embed(mu, method, seed=2, return_info=True, **kw)
        np.testing.assert_array_equal(y2, y)
        assert info["neighbours"] == doc["neighbours"] == "exact"
        assert info["neighbour_recall"] == doc["neighbour_recall"] == 1.0
        assert set(info["phase_seconds"]) == set(doc["phase_seconds"])


def test_disentanglement_codes_matches_cli(cli, tmp_path):
    rng = np.random.default_rng(5)
    factors = rng.integers(0, 4, size=(400, 2))
    codes = np.column_stack([factors[:, 0] + 0.3 * rng.normal(size=400),
                             factors[:, 1] + 0.3 * rng.normal(size=400),
                             rng.normal(size=400)])
    np.save(tmp_path / "c.npy", codes)
    np.save(tmp_path / "f.npy", factors)
    p = cli("disentanglement", "--codes", tmp_path / "c.npy", "--factors", tmp_path / "f.npy", "--json")
    got = ll.disentanglement(codes, factors)
    assert got == json.loads(p.stdout)
    # Codes that follow their factors score as such.
    assert got["mig"] > 0.5 and got["dci"]["disentanglement"] > 0.5
    assert got["beta_vae"] is None and "beta_vae" in got["not_computable"]


def test_attribute_vector_and_analogy():
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(30, 5)) + [2, 0, 0, 0, 0]
    neg = rng.normal(size=(40, 5))
    v = ll.attribute_vector(pos, neg)
    want = pos.mean(0) - neg.mean(0)
    np.testing.assert_allclose(v, want / np.linalg.norm(want), rtol=1e-5)
    a, b, c = rng.normal(size=(3, 4, 5))
    np.testing.assert_allclose(ll.analogy(a, b, c), b.mean(0) - a.mean(0) + c.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ll.analogy(a[0], b[0], c[0]), b[0] - a[0] + c[0], rtol=1e-5, atol=1e-6)


def test_torch_tensors_are_read():
    torch = pytest.importorskip("torch")
    z1, z2 = torch.zeros(6, requires_grad=True), torch.ones(6, dtype=torch.float64)
    np.testing.assert_array_equal(ll.interpolate(z1, z2, 3, "linear")[1], np.full(6, 0.5))
