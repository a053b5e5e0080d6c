"""docs/python.md's code runs as written."""

import os
import re

import pytest

from conftest import ROOT


def test_the_python_guide_runs(tmp_path, monkeypatch):
    if not os.environ.get("CI"):
        pytest.importorskip("torch")
    text = (ROOT / "docs" / "python.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/python.md block {i + 1}", "exec"), {"__name__": f"doc{i}"})
    assert (tmp_path / "report" / "index.html").exists()
    assert (tmp_path / "mnist-vae.safetensors").exists()
