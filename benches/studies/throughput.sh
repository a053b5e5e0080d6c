#!/usr/bin/env bash
# Study throughput on this machine: the same 8-run study (2 families × 4
# seeds, an MLP on procedural dSprites, each run trained and scored) with
# `study run --jobs 1` and with `--jobs 2`, from fresh plans, in one call.
# Prints runs per hour and the per-run cost each way.
#
# Usage: benches/studies/throughput.sh target/release/latentlab
set -euo pipefail
BIN=$(realpath "$1")
WORK=$(mktemp -d /tmp/latentlab-throughput.XXXXXX)
cat > "$WORK/grid.toml" <<'TOML'
data = "dsprites:4000"
arch = "mlp:256"
seeds = [0, 1, 2, 3]
epochs = 2

[train]
latent = 10
batch = 64
device = "cpu"

[score]
num_train = 300
num_eval = 150

[[family]]
name = "beta-vae"
objective = "elbo"
beta = 4

[[family]]
objective = "beta-tcvae"
tc_beta = 6
TOML
for jobs in 1 2; do
  "$BIN" study plan "$WORK/grid.toml" --out "$WORK/jobs$jobs" >/dev/null 2>&1
  start=$(date +%s.%N)
  "$BIN" study run "$WORK/jobs$jobs" --jobs "$jobs" --json 2>/dev/null > "$WORK/jobs$jobs.json"
  end=$(date +%s.%N)
  python3 - "$jobs" "$start" "$end" "$WORK/jobs$jobs" <<'PY'
import json, pathlib, sys
jobs, start, end, study = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), pathlib.Path(sys.argv[4])
rows = [json.loads(p.read_text()) for p in sorted(study.glob("runs/*/row.json"))]
wall = end - start
train = sum(r["train_seconds"] for r in rows) / len(rows)
score = sum(r["score_seconds"] for r in rows) / len(rows)
print(f"--jobs {jobs}: {len(rows)} runs in {wall:.1f} s = {3600 * len(rows) / wall:.0f} runs/hour; "
      f"per run: training {train:.1f} s, scoring {score:.1f} s")
PY
done
rm -rf "$WORK"
