"""The Python package against the peers a notebook user would call, in one
run with the same thread count on both sides (issue 17's speed figures):

- ``latentlab.embed(mu, 'tsne')`` against openTSNE and ``embed(mu, 'umap')``
  against umap-learn on the same 10,000 latents (a latentlab VAE's means of
  every mnist-10k digit), each map's trustworthiness@10 measured by the same
  function;
- ``latentlab.diagnose`` on 10^6 × 64 posteriors against the page's own
  diagnostics written in numpy.

Usage: python benches/peers/python_speed.py [--threads T] [--json] [--write docs/benchmarks.md]
(run with the package installed: ``cargo xtask test --python-only`` makes
target/python-venv). Prints one JSON document with --json.
"""

import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--json", action="store_true")
ap.add_argument("--rows", type=int, default=1_000_000)
ap.add_argument("--write", metavar="MD", help="splice the figures into this markdown file")
args = ap.parse_args()
for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
            "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread pins)

import latentlab as ll  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def page_diagnose(mu, logvar):
    """The page's diagnose_latent_space, in numpy, on arrays."""
    kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)
    mu_var = mu.var(axis=0, ddof=1)
    active = int((mu_var > 0.01).sum())
    mean_std = float(np.exp(0.5 * logvar).mean())
    agg_mean = mu.mean(axis=0)
    agg_var = mu_var + np.exp(logvar).mean(axis=0)
    agg_kl = 0.5 * float((agg_var + agg_mean ** 2 - 1 - np.log(agg_var)).sum())
    return {"mean_kl": float(kl.mean()), "active_dims": active,
            "mean_posterior_std": mean_std, "aggregate_kl": agg_kl}


out = {"threads": args.threads, "latentlab": ll.__version__, "numpy": np.__version__}

# The 10,000 latents: a latentlab VAE (3 epochs) on mnist-10k, all digits.
x, labels = ll.load_data("mnist-10k", split="all")
model = ll.train("mnist-10k", arch="mlp", epochs=3, latent=16, seed=0, progress=False)
mu, _ = model.encode(x)
mu = mu.astype(np.float64)
log(f"latents: {mu.shape}")

# t-SNE: 750 iterations (250 exaggerated) on both sides, perplexity 30.
import openTSNE  # noqa: E402

y_ll, t_ll = timed(lambda: ll.embed(mu, "tsne", perplexity=30, iterations=750, seed=0))
y_ot, t_ot = timed(lambda: np.asarray(openTSNE.TSNE(
    perplexity=30, n_iter=500, early_exaggeration_iter=250, n_jobs=args.threads,
    random_state=0, verbose=False).fit(mu)))
out["tsne"] = {
    "n": len(mu), "latentlab_s": t_ll, "opentsne_s": t_ot, "opentsne": openTSNE.__version__,
    "speedup": t_ot / t_ll,
    "trustworthiness10_latentlab": ll.trustworthiness(mu, y_ll, 10),
    "trustworthiness10_opentsne": ll.trustworthiness(mu, y_ot, 10),
}
log("tsne", out["tsne"])

# UMAP: 15 neighbours; umap-learn's numba code compiled first on a small fit.
import umap  # noqa: E402

umap.UMAP(n_neighbors=15, random_state=0).fit_transform(mu[:500])
y_ll, t_ll = timed(lambda: ll.embed(mu, "umap", neighbors=15, seed=0))
y_um, t_um = timed(lambda: umap.UMAP(n_neighbors=15, n_jobs=args.threads).fit_transform(mu))
out["umap"] = {
    "n": len(mu), "latentlab_s": t_ll, "umap_learn_s": t_um,
    "umap_learn": getattr(umap, "__version__", "?"), "speedup": t_um / t_ll,
    "trustworthiness10_latentlab": ll.trustworthiness(mu, y_ll, 10),
    "trustworthiness10_umap_learn": ll.trustworthiness(mu, y_um, 10),
}
log("umap", out["umap"])

# diagnose on 10^6 × 64.
rng = np.random.default_rng(0)
n = args.rows
big_mu = rng.standard_normal((n, 64)) * np.linspace(0.05, 2.0, 64)
big_lv = rng.normal(-1.0, 0.5, (n, 64))
page, t_np = timed(lambda: page_diagnose(big_mu, big_lv))
full, t_dg = timed(lambda: ll.diagnose(big_mu, big_lv))
agree = all(abs(full[k] - v) <= 1e-9 * max(1.0, abs(v)) for k, v in page.items())
out["diagnose"] = {
    "rows": n, "dims": 64, "latentlab_s": t_dg, "numpy_page_s": t_np,
    "ratio_numpy_over_latentlab": t_np / t_dg, "page_figures_agree": agree,
}
log("diagnose", out["diagnose"])

BEGIN = "<!-- python: written by benches/peers/python_speed.py --write -->"
END = "<!-- /python -->"


def markdown(o):
    t, u, d = o["tsne"], o["umap"], o["diagnose"]
    cmd = f"python benches/peers/python_speed.py --threads {o['threads']} --write docs/benchmarks.md"
    return f"""{BEGIN}
## The Python package against the notebook's peers ({o['threads']} threads)

`{cmd}` (with the package installed, e.g. in `target/python-venv` after `cargo xtask test`): one run, every thread pool pinned to {o['threads']}. The 10,000 latents are a latentlab VAE's 16-d means of every mnist-10k digit (3 epochs); each map's trustworthiness@10 is measured by the same function.

| call | latentlab s | peer | peer s | speed-up | trustworthiness@10 latentlab / peer |
|---|---:|---|---:|---:|---|
| `latentlab.embed(mu, 'tsne')` (750 iterations) | {t['latentlab_s']:.2f} | openTSNE {t['opentsne']} (`n_jobs` = {o['threads']}) | {t['opentsne_s']:.2f} | {t['speedup']:.1f}× | {t['trustworthiness10_latentlab']:.4f} / {t['trustworthiness10_opentsne']:.4f} |
| `latentlab.embed(mu, 'umap')` (15 neighbours) | {u['latentlab_s']:.2f} | umap-learn {u['umap_learn']} (after a JIT warm-up) | {u['umap_learn_s']:.2f} | {u['speedup']:.1f}× | {u['trustworthiness10_latentlab']:.4f} / {u['trustworthiness10_umap_learn']:.4f} |
| `latentlab.diagnose(mu, logvar)` on {d['rows']:,} × {d['dims']} f64 | {d['latentlab_s']:.2f} | the page's `diagnose_latent_space` in numpy {o['numpy']} | {d['numpy_page_s']:.2f} | {d['ratio_numpy_over_latentlab']:.2f}× | — |

`diagnose` computes more than the page's code: besides the page's four figures (which agree with numpy's to 1e-9: {d['page_figures_agree']}) it streams per-dimension KL and activity, and runs the Monte Carlo estimates of I(x; z), KL(q(z) ‖ p(z)) and the holes on a 10,000-row subset; the time includes them.
{END}
"""


if args.write:
    path = args.write
    old = open(path).read() if os.path.exists(path) else ""
    sec = markdown(out)
    b, e = old.find(BEGIN), old.find(END)
    new = old[:b].rstrip("\n") + "\n\n" + sec + old[e + len(END):].lstrip("\n") if 0 <= b < e else old.rstrip("\n") + "\n\n" + sec
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)
if args.json:
    print(json.dumps(out))
else:
    for k, v in out.items():
        print(k, v)
