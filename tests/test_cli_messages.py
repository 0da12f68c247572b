"""The command line's own messages: --version, and the two mistakes it names instead of
printing a traceback or a misleading line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import __version__, catalogue, cli

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"python -m harness {__version__}"


def test_evaluate_names_results_whose_cases_are_unknown(tmp_path, capsys):
    run = {"record": "run", "schema": 1, "device": "cpu", "cases": 1, "env": {"torch": "2.5.1"}}
    rec = {"record": "result", "id": "no-such-family/sum/x", "device": "cpu", "status": "ok", "error": None}
    (tmp_path / "2.5").mkdir()
    (tmp_path / "2.5" / "cpu.jsonl").write_text(json.dumps(run) + "\n" + json.dumps(rec) + "\n")
    assert cli.main(["evaluate", str(tmp_path)]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert "1 results, none of whose case ids are in the case files" in err and "--cases" in err


def _python_without_torch():
    for version in ("3.12", "3.13", "3.10", "3.9", "3.8"):
        exe = catalogue.find_interpreter(version)
        if exe and subprocess.run([exe, "-c", "import torch"], capture_output=True).returncode != 0:
            return exe
    return None


def test_run_with_an_interpreter_without_torch_says_what_to_pass(tmp_path):
    exe = _python_without_torch()
    if exe is None:
        pytest.skip("no interpreter without torch found")
    cmd = [sys.executable, "-m", "harness", "run", "--python", exe, "--device", "cpu", "--filter", "softmax-5/none/*"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert f"torch cannot be imported by {exe}" in proc.stderr and "pass --python" in proc.stderr
    assert "Traceback" not in proc.stderr


def _run_error(tmp_path, *args):
    """`harness run` with ``args`` (before any worker starts): (exit code, stderr lines)."""
    cmd = [sys.executable, "-m", "harness", "run", "--device", "cpu", "--filter", "softmax-5/none/*", *args]
    if "--out" not in args:
        cmd += ["--out", str(tmp_path / "out" / "{device}.jsonl")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr.strip().splitlines()


@pytest.mark.parametrize(
    "python, message",
    [
        ("/nonexistent/python", "--python /nonexistent/python: no such file"),
        ("README.md", "--python README.md: not executable"),
        ("harness", "--python harness: a directory, not a Python interpreter"),
        ("/bin/true", "--python /bin/true: not a Python 3 interpreter"),
    ],
)
def test_run_names_a_python_that_cannot_be_the_environment(tmp_path, python, message):
    code, lines = _run_error(tmp_path, "--python", python)
    assert code == cli.EXIT_INPUT and lines == [f"error: {message}"]
    assert not (tmp_path / "out" / "cpu.jsonl").exists()


def test_run_names_a_plan_or_an_output_that_cannot_be_used(tmp_path):
    code, lines = _run_error(tmp_path, "--plan", str(tmp_path / "missing.json"))
    assert code == cli.EXIT_INPUT and lines == [
        f"error: --plan {tmp_path / 'missing.json'}: cannot be used: No such file or directory"
    ]
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    code, lines = _run_error(tmp_path, "--plan", str(bad))
    assert code == cli.EXIT_INPUT and len(lines) == 1 and lines[0].startswith(f"error: --plan {bad}: cannot be used: ")
    bad.write_text("[]")
    code, lines = _run_error(tmp_path, "--plan", str(bad))
    assert code == cli.EXIT_INPUT and lines == [
        f"error: --plan {bad}: cannot be used: not a plan (an object with a 'cases' list)"
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = str(blocker / "sub" / "{device}.jsonl")
    code, lines = _run_error(tmp_path, "--out", out)
    assert (
        code == cli.EXIT_INPUT
        and len(lines) == 1
        and lines[0].startswith(f"error: --out {out}: cannot make the folder")
    )
    code, lines = _run_error(tmp_path, "--out", str(tmp_path))
    assert code == cli.EXIT_INPUT and len(lines) == 1 and f"--out {tmp_path}: {tmp_path} is a folder" in lines[0]
