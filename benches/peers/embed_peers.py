"""The peers of `latentlab embed`, timed on the same latents.

usage: python3 embed_peers.py LATENTS.npy|LATENTS.safetensors [OUT_DIR]

Prints one JSON line per method: scikit-learn PCA, openTSNE (n_jobs =
PEER_THREADS, default 2,
the reference's defaults: PCA init, perplexity 30), umap-learn (after a
JIT warm-up run), each with scikit-learn's trustworthiness@10. With OUT_DIR
the maps are written there as .npy files.
"""
import json
import os
import sys
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness


def report(method, x, y, seconds, out):
    t = trustworthiness(x, y, n_neighbors=10)
    print(json.dumps({"method": method, "n": len(x), "seconds": seconds, "trustworthiness10": t}))
    if out:
        np.save(f"{out}/{method}.npy", y)


def load(path):
    """A .npy array, or the `mu` tensor of a .safetensors file."""
    if not path.endswith(".safetensors"):
        return np.load(path)
    with open(path, "rb") as f:
        raw = f.read()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    t = header["mu"]
    dtype = {"F32": np.float32, "F64": np.float64}[t["dtype"]]
    a, b = t["data_offsets"]
    return np.frombuffer(raw[8 + size + a : 8 + size + b], dtype=dtype).reshape(t["shape"])


def main():
    x = load(sys.argv[1]).astype(np.float64)
    out = sys.argv[2] if len(sys.argv) > 2 else None
    t0 = time.perf_counter()
    y = PCA(n_components=2).fit_transform(x)
    report("sklearn-pca", x, y, time.perf_counter() - t0, out)

    from openTSNE import TSNE

    t0 = time.perf_counter()
    y = np.asarray(TSNE(n_jobs=int(os.environ.get('PEER_THREADS', '2')), random_state=0).fit(x))
    report("opentsne", x, y, time.perf_counter() - t0, out)

    import umap

    umap.UMAP(random_state=0).fit_transform(x[:500])  # JIT warm-up
    t0 = time.perf_counter()
    y = umap.UMAP(random_state=0).fit_transform(x)
    report("umap-learn", x, y, time.perf_counter() - t0, out)


if __name__ == "__main__":
    main()
