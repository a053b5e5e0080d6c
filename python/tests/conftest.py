"""Shared fixtures: the command line to compare against, and small data."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> str:
    env = os.environ.get("LATENTLAB_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "latentlab"
        if p.exists():
            return str(p)
    found = shutil.which("latentlab")
    if found:
        return found
    pytest.fail("no latentlab binary: build it (cargo build --release) or set LATENTLAB_BIN")


@pytest.fixture(scope="session")
def cli():
    """Runs `latentlab ARGS...`; returns the completed process."""
    binary = _binary()

    def run(*args, check=True):
        p = subprocess.run(
            [binary, *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "LATENTLAB_REQUIRE_GPU": "0"},
        )
        if check and p.returncode != 0:
            raise AssertionError(f"latentlab {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def blobs():
    """200 grey 16×16 images of a bright square at one of a 5×4 grid of
    places and sizes, values in [0, 1], with the two factor classes."""
    rng = np.random.default_rng(7)
    n = 200
    x = np.zeros((n, 1, 16, 16), np.float32)
    factors = np.zeros((n, 2), np.int64)
    for i in range(n):
        pos, size = rng.integers(0, 5), rng.integers(0, 4)
        factors[i] = (pos, size)
        s = 3 + size
        r = c = 1 + 2 * pos
        x[i, 0, r : r + s, c : c + s] = 1.0
    x += rng.uniform(0, 0.05, x.shape).astype(np.float32)
    return np.clip(x, 0, 1), factors
