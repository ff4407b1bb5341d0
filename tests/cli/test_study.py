"""ebmfast.runs.study (the shared pieces of the example studies) and the exit-code module."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import ebmfast.cli as cli_pkg
from ebmfast.runs.study import (markdown_table, mean_sd, mean_sd_text, study_dir, study_parser, write_json,
                                write_markdown)


def test_parser_flags_and_results_dir(tmp_path):
    p = study_parser("doc", tag="repro", seeds=(0, 1), quick="1 seed")
    a = p.parse_args([])
    assert (a.tag, a.seeds, a.threads, a.quick, a.out) == ("repro", [0, 1], 1, False, None)
    script = tmp_path / "study.py"
    assert study_dir(str(script), a) == tmp_path / "results" / "repro" and (tmp_path / "results" / "repro").is_dir()
    a = p.parse_args(["--out", str(tmp_path / "elsewhere"), "--seeds", "3"])
    assert study_dir(str(script), a) == tmp_path / "elsewhere" and a.seeds == [3]
    bare = study_parser("doc").parse_args([])
    assert not hasattr(bare, "tag") and not hasattr(bare, "seeds") and not hasattr(bare, "quick")


def test_mean_sd_and_tables(tmp_path):
    assert mean_sd([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert mean_sd([1.0, float("nan")]) == (1.0, 0.0)
    assert math.isnan(mean_sd([1.0, float("nan")], skip_nonfinite=False)[0])
    assert mean_sd_text([1.0, 3.0], 1) == "2.0 ± 1.4" and mean_sd_text([]) == "nan"
    assert markdown_table(["a", "b"], [[1, "x"]]) == ["| a | b |", "|---|---|", "| 1 | x |"]
    lines = write_markdown(tmp_path / "s.md", "# T", ["a"], [[1]], preamble=["args: {}"], notes=["note"])
    assert (tmp_path / "s.md").read_text() == "\n".join(lines) + "\n"
    assert lines == ["# T", "", "args: {}", "", "| a |", "|---|", "| 1 |", "", "note"]
    write_json(tmp_path / "r.json", {"x": [1, 2]}, indent=1)
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": [1, 2]}
    assert not (tmp_path / "r.json").read_text().endswith("\n")
    write_json(tmp_path / "r.json", {"x": 1}, newline=True)
    assert (tmp_path / "r.json").read_text() == '{"x": 1}\n'


def test_cli_modules_do_not_import_each_other_in_a_circle():
    """main imports the commands; no command module imports main (exit codes live in exit_codes)."""
    folder = Path(cli_pkg.__file__).parent
    for f in folder.glob("*.py"):
        if f.name in ("main.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module != "main", f"{f.name} imports cli.main"
