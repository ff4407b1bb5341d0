"""scripts/gpu_check.sh runs only on a GPU machine: here, its syntax and that it runs every step."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_syntax():
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_names_each_step():
    text = SCRIPT.read_text()
    steps = {
        "env": "env_info",
        "build": "pip install --no-build-isolation --no-deps --no-index -e .",
        "pytest_cuda": "-m pytest -m cuda",
        "memcheck": "--tool memcheck \"$PY\" scripts/gpu_sanitize_cases.py",
        "racecheck": "--tool racecheck \"$PY\" scripts/gpu_sanitize_cases.py",
        "bench_mlp": "bench/bench_mlp.py --device cuda --quick --out \"$OUT_DIR\"",
        "bench_langevin": "bench/bench_langevin_step.py --device cuda --quick --out \"$OUT_DIR\"",
    }
    for name, command in steps.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(f"step {name} ")]
        assert len(lines) == 1, f"step {name} is not run exactly once"
        body = text[text.index(lines[0]):].split("\nstep ", 2)[0]
        assert command in body, f"step {name} does not run {command!r}"
    assert (ROOT / "scripts" / "gpu_sanitize_cases.py").is_file()
