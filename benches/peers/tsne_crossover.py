"""Where t-SNE's FFT-interpolated repulsion overtakes Barnes-Hut (issue 19):
both methods on the same latents at several sizes, one run, the same thread
count, with each map's trustworthiness@10 on a fixed subset.

The latents: a latentlab VAE's (3 epochs, 20-d) posterior of every mnist-10k
digit, sampled `ceil(N / 10,000)` times per digit, the first N rows.

Usage: python benches/peers/tsne_crossover.py [--threads T] [--sizes 2000,5000,...] [--json]
(with the package installed, e.g. in target/python-venv after cargo xtask test)
"""

import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--sizes", default="1000,2000,5000,10000,20000")
ap.add_argument("--json", action="store_true")
args = ap.parse_args()
os.environ["RAYON_NUM_THREADS"] = str(args.threads)

import numpy as np  # noqa: E402

import latentlab as ll  # noqa: E402

sizes = [int(s) for s in args.sizes.split(",")]
x, _ = ll.load_data("mnist-10k", split="all")
model = ll.train("mnist-10k", arch="mlp", epochs=3, latent=20, seed=0, progress=False)
mu, logvar = model.encode(x)
rng = np.random.default_rng(0)
reps = -(-max(sizes) // len(mu))
codes = np.concatenate([mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape) for _ in range(reps)])
codes = codes.astype(np.float64)

rows = []
for n in sizes:
    z = codes[:n]
    sub = np.sort(rng.choice(n, min(n, 2000), replace=False))
    row = {"n": n}
    for method in ("barnes-hut", "fft"):
        t = time.perf_counter()
        y = ll.embed(z, "tsne", tsne_method=method, iterations=750, seed=0)
        row[f"{method}_s"] = time.perf_counter() - t
        row[f"{method}_trust10"] = ll.trustworthiness(z[sub], y[sub], 10)
    row["fft_speedup"] = row["barnes-hut_s"] / row["fft_s"]
    rows.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)

out = {"threads": args.threads, "rows": rows}
if args.json:
    print(json.dumps(out))
else:
    print("| N | Barnes-Hut s | FFT s | FFT speed-up | trustworthiness@10 BH / FFT |")
    print("|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['n']} | {r['barnes-hut_s']:.2f} | {r['fft_s']:.2f} | {r['fft_speedup']:.2f}× | "
              f"{r['barnes-hut_trust10']:.4f} / {r['fft_trust10']:.4f} |")
