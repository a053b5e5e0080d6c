#!/usr/bin/env bash
# A study on a real scheduler: starts a single-node Slurm cluster on this
# machine (munged, slurmctld and slurmd on localhost, a minimal slurm.conf),
# plans a tiny study (4 runs of a few steps), submits `latentlab study
# slurm`'s array script with sbatch, waits for it, collects the results and
# reads the Parquet file with Polars and DuckDB (installed from PyPI here).
#
# Usage: .ci/slurm.sh PATH/TO/latentlab   (as root, on Debian)
set -euo pipefail
BIN=$(realpath "$1")
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

if ! dpkg -s slurm-wlm munge python3-venv >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge python3-venv >/dev/null
fi

WORK=$(mktemp -d /tmp/latentlab-slurm.XXXXXX)
chmod 755 "$WORK"

# munge: the key the package made, its folders, the daemon.
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
chmod 0700 /var/log/munge /var/lib/munge
pkill -x munged 2>/dev/null || true
runuser -u munge -- /usr/sbin/munged --force
munge -n | unmunge >/dev/null

# slurm.conf for this one machine: its CPUs and memory as slurmd sees them.
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NODE=$(slurmd -C | head -n 1 | sed -e 's/NodeName=[^ ]*/NodeName=localhost/')
MEM=$(echo "$NODE" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
NODE=$(echo "$NODE" | sed -e "s/RealMemory=[0-9]*/RealMemory=$((MEM * 9 / 10))/")
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=latentlab-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
$NODE State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
slurmctld -c
slurmd
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 1
done
sinfo

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}
trap stop EXIT
trap 'cat /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log "$WORK"/study/logs/* 2>/dev/null | tail -n 80' ERR

cat > "$WORK/grid.toml" <<'EOF'
data = "dsprites:400"
arch = "mlp:32"
seeds = [0, 1]
steps = 12

[train]
latent = 4
batch = 64
device = "cpu"

[score]
samples = 200
probes = 200
num_train = 20
num_eval = 10

[[family]]
name = "beta-vae"
objective = "elbo"
beta = 4

[[family]]
objective = "beta-tcvae"
tc_beta = 6
EOF
"$BIN" study plan "$WORK/grid.toml" --out "$WORK/study"
SUBMIT=$("$BIN" study slurm "$WORK/study" --partition debug --time 0:20:00 --cpus 1)
echo "$SUBMIT"
# The printed command, as a user would paste it: "Submitted batch job N".
JOB=$(eval "$SUBMIT" | awk '/Submitted batch job/ {print $NF}')
[ -n "$JOB" ]
echo "submitted job array $JOB"
# Wait for every task to leave the queue.
for _ in $(seq 600); do
  if [ -z "$(squeue -h -j "$JOB")" ]; then break; fi
  sleep 2
done
if [ -n "$(squeue -h -j "$JOB")" ]; then
  echo "the array did not finish in 20 minutes" >&2
  squeue
  exit 1
fi
cat "$WORK"/study/logs/*.log | tail -n 20
"$BIN" study status "$WORK/study"
"$BIN" study collect "$WORK/study" --out "$WORK/results.parquet"

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet polars duckdb
"$WORK/venv/bin/python" - "$WORK/results.parquet" <<'EOF'
import sys

import duckdb
import polars as pl

path = sys.argv[1]
df = pl.read_parquet(path)
print(df.select(["id", "status", "beta", "tc_beta", "seed", "steps", "test_neg_elbo", "mig", "active_units"]))
assert df.height == 4, df.height
assert (df["status"] == "finished").all(), df["status"].to_list()
for column in ["index", "id", "family", "objective", "seed", "steps", "epochs", "beta", "tc_beta",
               "test_neg_elbo", "active_units", "mutual_information", "verdict", "beta_vae",
               "factor_vae", "mig", "sap", "dci_disentanglement", "modularity", "explicitness",
               "wall_seconds", "error"]:
    assert column in df.columns, column
assert df["mig"].null_count() == 0 and df["steps"].to_list() == [12] * 4
assert df["beta"].null_count() == 2 and df["tc_beta"].null_count() == 2
rows = duckdb.sql(f"select family, count(*) as n, avg(mig) from '{path}' group by family order by family").fetchall()
print(rows)
assert [(f, n) for f, n, _ in rows] == [("beta-tcvae", 2), ("beta-vae", 2)], rows
print("slurm study: 4 runs through sbatch, collected, read by Polars and DuckDB")
EOF
