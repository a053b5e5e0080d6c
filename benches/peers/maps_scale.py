"""Latent maps at scale (issue 19): `latentlab embed` against openTSNE and
umap-learn on the same latents, one run each, the same thread count.

The latents are the aggregate posterior of the main job's model (the
default `latentlab train --data mnist-10k --epochs 20`, 20-d): every one of
the 10,000 digits' posteriors N(mu, diag exp(logvar)) sampled
`ceil(N / 10,000)` times with a fixed seed, the first N rows. Both sides map
the same float64 array. Trustworthiness@10 is scikit-learn's, on the same
fixed 10,000-point subset of each map (all points at N = 10,000).

Usage:
  python3 benches/peers/maps_scale.py --bin target/release/latentlab \
      [--sizes 10000,60000] [--threads 2] [--no-peers] [--json] [--write docs/benchmarks.md]

`--sizes 1000000 --no-peers` is the 10^6 run: latentlab alone, with its
peak resident memory (the embed process's own, as it reports it).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True, help="the latentlab binary")
ap.add_argument("--sizes", default="10000,60000")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--no-peers", action="store_true")
ap.add_argument("--json", action="store_true")
ap.add_argument("--write", help="splice the table into this markdown file")
ap.add_argument("--work", help="a folder for the model and latents (default: a temporary one)")
ap.add_argument("--from", dest="saved", help="format (and --write) the result of an earlier --json run instead of running")
args = ap.parse_args()
for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402
from sklearn.manifold import trustworthiness  # noqa: E402

BEGIN = "<!-- maps-scale: written by benches/peers/maps_scale.py --write -->"
END = "<!-- /maps-scale -->"


def tensors(path, names):
    """Named tensors of a .safetensors file, as numpy arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    out = {}
    for name in names:
        t = header[name]
        dtype = {"F32": np.float32, "F64": np.float64}[t["dtype"]]
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + size + a : 8 + size + b], dtype=dtype).reshape(t["shape"])
    return out


def run(cmd):
    """Runs a latentlab command; returns its JSON and its ru_maxrss in MiB
    (from wait4). That figure is at least this Python process's resident
    set at the spawn, which Linux records into the child at exec, so the
    table prefers the child's own `peak_rss_mib`."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {err.read().strip().splitlines()[-1:]}")
        return json.loads(out.read()), usage.ru_maxrss / 1024


def latents(work, n_max):
    ck = os.path.join(work, "vae.safetensors")
    lat = os.path.join(work, "latents.safetensors")
    if not os.path.exists(lat):
        run([args.bin, "train", "--data", "mnist-10k", "--epochs", "20", "--device", "cpu", "--out", ck, "--json"])
        run([args.bin, "encode", "--checkpoint", ck, "--split", "all", "--device", "cpu", "--out", lat, "--json"])
    t = tensors(lat, ["mu", "logvar"])
    mu, sd = t["mu"].astype(np.float64), np.exp(0.5 * t["logvar"].astype(np.float64))
    rng = np.random.default_rng(0)
    reps = -(-n_max // len(mu))
    z = np.empty((reps * len(mu), mu.shape[1]))
    for r in range(reps):
        z[r * len(mu) : (r + 1) * len(mu)] = mu + sd * rng.standard_normal(mu.shape)
    return z


def subset(n):
    if n <= 10_000:
        return np.arange(n)
    return np.sort(np.random.default_rng(1).choice(n, 10_000, replace=False))


def main():
    if args.saved:
        result = json.load(open(args.saved))
        print(markdown(result))
        if args.write:
            splice(args.write, markdown(result))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or tempfile.mkdtemp(prefix="latentlab-maps-")
    os.makedirs(work, exist_ok=True)
    codes = latents(work, max(sizes))
    rows = []
    for n in sizes:
        z = np.ascontiguousarray(codes[:n])
        path = os.path.join(work, f"z{n}.npy")
        np.save(path, z)
        sub = subset(n)
        for method in ("tsne", "umap"):
            out = os.path.join(work, f"{method}{n}.npy")
            t0 = time.perf_counter()
            rep, peak = run([args.bin, "embed", "--latents", path, "--method", method, "--out", out, "--json"])
            wall = time.perf_counter() - t0
            y = np.load(out)
            row = {
                "n": n,
                "method": method,
                "latentlab_s": wall,
                "latentlab_map_s": rep["seconds"],
                "latentlab_phases": rep["phase_seconds"],
                "neighbours": rep["neighbours"],
                "neighbour_recall": rep["neighbour_recall"],
                "latentlab_trust10": trustworthiness(z[sub], y[sub], n_neighbors=10),
                # latentlab's own high-water mark; the wait4 figure can carry
                # this Python process's memory into the child at spawn.
                "latentlab_peak_mib": rep.get("peak_rss_mib") or peak,
            }
            if not args.no_peers:
                t0 = time.perf_counter()
                if method == "tsne":
                    from openTSNE import TSNE

                    yp = np.asarray(TSNE(n_jobs=args.threads, random_state=0).fit(z))
                    row["peer"] = "openTSNE " + __import__("openTSNE").__version__
                else:
                    import umap

                    umap.UMAP(random_state=0).fit_transform(z[:500])  # JIT warm-up
                    t0 = time.perf_counter()
                    yp = umap.UMAP(random_state=0).fit_transform(z)
                    row["peer"] = "umap-learn " + umap.__version__
                row["peer_s"] = time.perf_counter() - t0
                row["peer_trust10"] = trustworthiness(z[sub], yp[sub], n_neighbors=10)
                row["speedup"] = row["peer_s"] / row["latentlab_map_s"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"threads": args.threads, "rows": rows}
    if args.json:
        print(json.dumps(result))
    table = markdown(result)
    if not args.json:
        print(table)
    if args.write:
        splice(args.write, table)


def markdown(r):
    sizes = ",".join(sorted({str(x["n"]) for x in r["rows"]}, key=int))
    cmd = f"python3 benches/peers/maps_scale.py --bin target/release/latentlab --sizes {sizes} --threads {r['threads']}"
    if args.no_peers:
        cmd += " --no-peers"
    lines = [
        BEGIN,
        "",
        f"Maps at scale, {r['threads']} threads on both sides, one run each (`{cmd} --write docs/benchmarks.md`).",
        "The latents: the main job's model's posterior of every mnist-10k digit sampled ⌈N / 10,000⌉ times (20-d).",
        "Trustworthiness@10 is scikit-learn's, on one fixed 10,000-point subset of both maps.",
        "latentlab's seconds are its map's (`seconds` in `latentlab embed --json`: neighbours, affinities, initialisation and optimisation), as the peers' are their `fit`'s;"
        " the process's wall time, which adds reading the file, the recall estimate and scoring the map, is in parentheses. The speed-up compares the maps' seconds.",
        "Peak MiB is the `latentlab embed` process's own maximum resident set (`peak_rss_mib`, Linux's VmHWM).",
        "",
        "| N | map | latentlab s (wall) | peer | peer s | speed-up | trustworthiness@10 latentlab / peer | neighbours (recall) | latentlab phases s | peak MiB |",
        "|---:|---|---:|---|---:|---:|---|---|---|---:|",
    ]
    for x in r["rows"]:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in x["latentlab_phases"].items())
        peer = x.get("peer", "—")
        ps = f"{x['peer_s']:.1f}" if "peer_s" in x else "—"
        sp = f"{x['speedup']:.2f}×" if "speedup" in x else "—"
        pt = f"{x['peer_trust10']:.4f}" if "peer_trust10" in x else "—"
        map_s = x.get("latentlab_map_s", sum(x["latentlab_phases"].values()))
        peak = f"{x['latentlab_peak_mib']:.0f}" if x.get("latentlab_peak_mib") else "—"
        lines.append(
            f"| {x['n']} | {x['method']} | {map_s:.1f} ({x['latentlab_s']:.1f}) | {peer} | {ps} | {sp} | "
            f"{x['latentlab_trust10']:.4f} / {pt} | {x['neighbours']} ({x['neighbour_recall']:.3f}) | {phases} | {peak} |"
        )
    lines += ["", END, ""]
    return "\n".join(lines)


def splice(path, table):
    old = open(path).read() if os.path.exists(path) else ""
    b, e = old.find(BEGIN), old.find(END)
    if 0 <= b < e:
        new = old[:b].rstrip("\n") + "\n\n" + table + old[e + len(END) :].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + table
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
