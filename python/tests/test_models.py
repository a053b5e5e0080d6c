"""The user's own model through callbacks, and training from Python."""

import json
import subprocess

import numpy as np
import pytest

import latentlab as ll

import os

if os.environ.get("CI"):
    import torch  # CI installs it: the tests must run, not skip
else:
    torch = pytest.importorskip("torch")
nn = torch.nn


class ConvVae(nn.Module):
    """A small PyTorch conv VAE for 1×16×16 images, defined here."""

    def __init__(self, latent=4):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(),  # 8×8
            nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),  # 4×4
            nn.Flatten(), nn.Linear(16 * 16, 2 * latent),
        )
        self.dec = nn.Sequential(
            nn.Linear(latent, 16 * 16), nn.ReLU(), nn.Unflatten(1, (16, 4, 4)),
            nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid(),
        )
        self.latent = latent
        self.calls = 0

    def encode(self, x):
        self.calls += 1
        h = self.enc(x)
        return h[:, : self.latent], h[:, self.latent :]

    def decode(self, z):
        return self.dec(z)


def test_report_and_traversals_by_callback(blobs, tmp_path):
    x, _ = blobs
    vae = ConvVae()
    model = ll.Model.from_torch(vae.encode, vae.decode, batch_size=64)
    page = ll.report(model, x, labels=np.arange(len(x)) % 3, out=tmp_path / "r", map_points=60)
    assert page.endswith("index.html")
    html = (tmp_path / "r" / "index.html").read_text()
    assert "<html" in html.lower() and len(html) > 10_000
    summary = json.loads((tmp_path / "r" / "report.json").read_text())
    assert summary["index"] == page
    assert model.latent_dim == 4 and model.input_shape == (1, 16, 16)
    # Batching goes through the callbacks: 200 images in batches of 64.
    calls = vae.calls
    mu, lv = model.encode(x)
    assert vae.calls - calls == 4 and mu.shape == (200, 4) and mu.dtype == np.float32
    with torch.no_grad():
        ref = vae.encode(torch.from_numpy(x))
    np.testing.assert_allclose(mu, ref[0].numpy(), rtol=1e-5, atol=1e-6)

    z = mu[0]
    strip = ll.traverse(model, z, 2, lo=-2, hi=2, steps=5)
    assert strip.shape == (5, 1, 16, 16)
    codes = np.repeat(z[None], 5, 0)
    codes[:, 2] = np.linspace(-2, 2, 5)
    with torch.no_grad():
        want = vae.decode(torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(strip, want, rtol=1e-5, atol=1e-6)
    assert ll.traverse(model, z, None, steps=3).shape == (12, 1, 16, 16)


def test_holes_geodesic_and_disentanglement_by_callback(blobs):
    x, factors = blobs
    vae = ConvVae()
    model = ll.Model(vae)  # any object with encode/decode; a Module gets tensors
    h = ll.holes(model, x, probes=200)
    assert 0.0 <= h["fraction"] <= 1.0 and len(h["log_ratio"]) == 200
    mu, _ = model.encode(x)
    path, stats = ll.geodesic(model, mu[0], mu[1], segments=6, iterations=5)
    assert path.shape == (7, 4)
    np.testing.assert_allclose(path[0], mu[0], atol=1e-6)
    assert stats["energy"] <= stats["linear_energy"] + 1e-9
    d = ll.disentanglement(model, (x, factors), num_train=100, num_eval=50, names=["pos", "size"])
    # With a model every metric is computable, the interventional ones too.
    for key in ("beta_vae", "factor_vae", "mig", "sap", "modularity", "explicitness"):
        assert isinstance(d[key], float) and 0.0 <= d[key] <= 1.0, key
    assert 0.0 <= d["dci"]["disentanglement"] <= 1.0


def test_a_callback_exception_surfaces_as_itself(blobs, tmp_path):
    x, _ = blobs

    class Boom(Exception):
        pass

    vae = ConvVae()

    def encoder(t):
        if t.shape[0] > 1:  # the probe of one row passes; the work does not
            raise Boom("from the encoder")
        return vae.encode(t)

    model = ll.Model.from_torch(encoder, vae.decode)
    with pytest.raises(Boom, match="from the encoder"):
        ll.report(model, x, out=tmp_path / "r", map_points=60)
    with pytest.raises(TypeError, match=r"\(mu, logvar\)"):
        ll.holes(ll.Model.from_torch(lambda t: t.flatten(1), vae.decode), x)


def test_train_save_and_the_cli_reads_it(blobs, tmp_path, cli):
    x, _ = blobs
    seen = []
    m = ll.train(x, arch="mlp:64", epochs=2, latent=3, batch=32, seed=1, progress=seen.append)
    assert [e["epoch"] for e in seen] == [1, 2] and all("train_neg_elbo" in e for e in seen)
    mu, lv = m.encode(x)
    assert mu.shape == (200, 3) and np.isfinite(lv).all()
    ckpt = tmp_path / "m.safetensors"
    m.save(ckpt)
    again = ll.Model.load(ckpt)
    np.testing.assert_array_equal(again.encode(x)[0], mu)
    # The command line reads the file: its codes are the same rows' codes.
    np.save(tmp_path / "x.npy", x)
    cli("encode", "--checkpoint", ckpt, "--data", tmp_path / "x.npy", "--split", "all",
        "--out", tmp_path / "z.safetensors", "--device", "cpu")
    from safetensors.numpy import load_file

    z = load_file(str(tmp_path / "z.safetensors"))["mu"]
    order = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_allclose(order(z), order(mu), rtol=1e-5, atol=1e-6)
    # decode: the command line and the package give the same images.
    np.save(tmp_path / "codes.npy", mu[:5])
    cli("decode", "--checkpoint", ckpt, "--latents", tmp_path / "codes.npy",
        "--out", tmp_path / "xhat.npy", "--device", "cpu")
    np.testing.assert_allclose(
        np.load(tmp_path / "xhat.npy").reshape(5, -1), m.decode(mu[:5]).reshape(5, -1), rtol=1e-5, atol=1e-6
    )


def test_stopping_training_keeps_a_resumable_state(blobs, tmp_path):
    x, _ = blobs

    def stop(_epoch):
        raise KeyboardInterrupt

    out = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):
        ll.train(x, arch="mlp:32", epochs=5, latent=2, batch=50, out=out, progress=stop)
    assert list(tmp_path.glob("m*.resume*")) or list(tmp_path.glob("*.resume"))
    m = ll.train(x, arch="mlp:32", epochs=5, latent=2, batch=50, out=out, progress=False,
                 resume=str(out) + ".resume")
    assert m.latent_dim == 2


def test_attribute_vector_matches_the_cli(tmp_path, cli):
    m = ll.train("mnist-10k", arch="mlp:64", epochs=1, latent=4, seed=3, progress=False)
    ckpt = tmp_path / "m.safetensors"
    m.save(ckpt)
    cli("attribute", "--checkpoint", ckpt, "--data", "mnist-10k", "--from-class", 3,
        "--to-class", 8, "--save", tmp_path / "v.safetensors", "--out", tmp_path / "e.png",
        "--device", "cpu")
    from safetensors.numpy import load_file

    want = load_file(str(tmp_path / "v.safetensors"))["class:3->8"]
    x, y = ll.load_data("mnist-10k", split="test")
    assert x.shape == (2000, 1, 28, 28) and y.shape == (2000,)
    mu, _ = m.encode(x)
    np.testing.assert_array_equal(ll.attribute_vector(mu[y == 8], mu[y == 3], "class:3->8"), want)
