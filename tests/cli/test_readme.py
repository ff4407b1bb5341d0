"""The README's quick start runs as written: the first ```python block under a "Quick start" heading."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from _cli import REPO, cli_env

README = REPO / "README.md"


def quick_start_block(text: str) -> str | None:
    """The first ```python fenced block after a Markdown heading containing "Quick start" (any level/case)."""
    m = re.search(r"^#{1,6}[^\n]*quick[ -]?start[^\n]*$", text, flags=re.IGNORECASE | re.MULTILINE)
    if m is None:
        return None
    b = re.search(r"^```python[^\n]*\n(.*?)^```", text[m.end():], flags=re.DOTALL | re.MULTILINE)
    return b.group(1) if b else None


def test_quick_start_block_extraction():
    text = "# x\n```python\nno()\n```\n## Quick start\ntext\n```bash\nls\n```\n```python\nyes()\n```\n"
    assert quick_start_block(text) == "yes()\n"
    assert quick_start_block("# Install\n```python\nx()\n```\n") is None


@pytest.mark.skipif(not README.is_file(), reason="README.md is not present in this checkout")
def test_readme_quick_start_runs(tmp_path):
    code = quick_start_block(README.read_text())
    assert code is not None, "README.md has no ```python block under a 'Quick start' heading"
    (tmp_path / "quick_start.py").write_text(code)
    p = subprocess.run([sys.executable, "quick_start.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=cli_env(MPLBACKEND="Agg"))
    assert p.returncode == 0, f"the README quick start failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
