"""Stage 3a: the supervisor.  Builds the plan on the host, runs it in a worker process
(inside the torch environment) and survives crashes and hangs case by case.

The worker runs many cases per process (fast); when it dies or a case passes its
timeout, the case in flight is recorded as crash/timeout and a fresh worker goes on
with the next case.  Every finished result is appended to the JSONL file at once.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .results import SCHEMA_VERSION, Writer, read

WORKER = Path(__file__).resolve().parent / "worker.py"
STARTUP_TIMEOUT = 300.0  # importing an old torch from a cold disk can be slow
MAX_STARTUP_FAILURES = 2


class RunnerError(Exception):
    """The environment cannot run the worker at all (torch missing, ...)."""


@dataclass
class RunSummary:
    device: str
    total: int = 0
    skipped: int = 0  # already present (resume)
    finished: int = 0
    crashed: int = 0
    timed_out: int = 0
    restarts: int = 0
    seconds: float = 0.0
    env: dict = field(default_factory=dict)


def build_plan(cases, hooks: dict | None = None, extra_entries=()) -> dict:
    """The worker's input: one entry per case (plus ready-made entries such as the
    claims' snippets), each with a digest of its inputs."""
    from .inputs import plan_entry  # NumPy lives on the host only

    entries, arrays = [], {}
    for extra in extra_entries:
        entries.append({**extra, "digest": input_digest(extra)})
    for case in cases:
        entry = plan_entry(case, arrays)
        entry["digest"] = input_digest(entry)
        if hooks and case.id in hooks:
            entry["hook"] = hooks[case.id]
        entries.append(entry)
    return {"protocol": 2, "arrays": arrays, "cases": entries}


def input_digest(entry: dict) -> str:
    """Stable digest of what a case feeds torch (array keys are content hashes);
    detects stale results after edits."""
    keys = ("api", "reduction", "log_target", "dtype", "grad", "first", "second", "snippet", "values")
    blob = json.dumps({k: entry[k] for k in keys if k in entry}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _unpack(tensor):
    """A worker tensor {shape, dtype, f64: base64 float64 bytes} -> {shape, dtype, values}."""
    if isinstance(tensor, dict) and "f64" in tensor:
        raw = base64.b64decode(tensor.pop("f64"))
        tensor["values"] = list(struct.unpack(f"<{len(raw) // 8}d", raw))
    return tensor


def _reader(stream, q):
    for line in stream:
        line = line.strip()
        if not line:
            continue
        try:
            q.put(json.loads(line))
        except ValueError:
            q.put({"event": "noise", "text": line[:500]})
    q.put(None)  # EOF


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _exit_detail(code):
    if code is None:
        return "killed"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"worker exited with code {code}"


def _tail(path, start, limit=1500):
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
        return data[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


class Supervisor:
    def __init__(self, python, timeout, progress=None, env=None):
        self.python = python
        self.timeout = timeout
        self.progress = progress or (lambda msg: None)
        self.env = env

    def run_device(self, plan_path, plan, device, todo, writer, header_extra) -> RunSummary:
        summary = RunSummary(device=device, total=len(plan["cases"]))
        todo = list(todo)
        summary.skipped = summary.total - len(todo)
        t0 = time.perf_counter()
        last_report = t0
        startup_failures = stalls = 0
        header_written = False
        workdir = Path(plan_path).parent
        while todo:
            idx_path = workdir / f"indices-{device.replace(':', '_')}.json"
            idx_path.write_text(json.dumps(todo))
            err_path = workdir / f"stderr-{device.replace(':', '_')}.log"
            err = open(err_path, "ab")
            err_start = err.tell()
            proc = subprocess.Popen(
                [self.python, str(WORKER), str(plan_path), str(idx_path), device],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
                env={**(self.env or os.environ), "HARNESS_SUPERVISOR_PID": str(os.getpid())},
            )
            q: queue.Queue = queue.Queue()
            threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
            current, ready = None, False
            done_indices = set()
            try:
                while True:
                    wait = STARTUP_TIMEOUT if not ready else self.timeout
                    try:
                        ev = q.get(timeout=wait)
                    except queue.Empty:
                        if not ready:
                            _kill(proc)
                            raise RunnerError(
                                f"worker did not start within {STARTUP_TIMEOUT:.0f}s: {_tail(err_path, err_start)}"
                            )
                        _kill(proc)
                        if current is None:  # stalled between cases: restart, nothing to record
                            break
                        writer.write(self._failure(plan, current, device, "timeout",
                                                   f"no result within {self.timeout:g}s", err_path, err_start))
                        summary.timed_out += 1
                        done_indices.add(current)
                        break
                    if ev is None:  # EOF: worker ended
                        proc.wait()
                        if not ready:
                            startup_failures += 1
                            if startup_failures >= MAX_STARTUP_FAILURES:
                                raise RunnerError(
                                    f"worker failed to start ({_exit_detail(proc.returncode)}) with {self.python}:\n"
                                    f"{_tail(err_path, err_start)}"
                                )
                            break
                        if current is not None and current not in done_indices:
                            writer.write(self._failure(plan, current, device, "crash",
                                                       _exit_detail(proc.returncode), err_path, err_start))
                            summary.crashed += 1
                            done_indices.add(current)
                        break
                    kind = ev.get("event")
                    if kind == "fatal":
                        _kill(proc)
                        raise RunnerError(f"{device}: {ev.get('message')}")
                    if kind == "ready":
                        ready = True
                        summary.env = ev["env"]
                        if not header_written:
                            writer.write({"record": "run", "schema": SCHEMA_VERSION, "device": device,
                                          "env": ev["env"], **header_extra})
                            header_written = True
                    elif kind == "start":
                        current = ev["index"]
                    elif kind == "result":
                        i = ev.pop("index")
                        ev.pop("event")
                        entry = plan["cases"][i]
                        _unpack(ev.get("output"))
                        for g in (ev.get("grads") or {}).values():
                            _unpack(g)
                        writer.write({"record": "result", "status": "ok", "digest": entry["digest"], **ev})
                        summary.finished += 1
                        done_indices.add(i)
                        current = None
                        now = time.perf_counter()
                        if now - last_report >= 2.0:
                            last_report = now
                            n = summary.skipped + summary.finished + summary.crashed + summary.timed_out
                            self.progress(f"[{device}] {n}/{summary.total} cases, {now - t0:.1f}s")
                    elif kind == "done":
                        proc.wait()
                        break
            finally:
                err.close()
                if proc.poll() is None:
                    _kill(proc)
            todo = [i for i in todo if i not in done_indices]
            stalls = 0 if done_indices else stalls + 1
            if todo and stalls >= MAX_STARTUP_FAILURES:
                raise RunnerError(f"{device}: worker restarted {stalls} times without finishing a case:\n"
                                  f"{_tail(err_path, err_start)}")
            if todo:
                summary.restarts += 1
        summary.seconds = time.perf_counter() - t0
        return summary

    @staticmethod
    def _failure(plan, index, device, status, detail, err_path, err_start):
        entry = plan["cases"][index]
        return {"record": "result", "status": status, "id": entry["id"], "device": device,
                "digest": entry["digest"], "detail": detail, "stderr": _tail(err_path, err_start, 800),
                "output": None, "grads": {}, "grad_errors": {}, "error": None, "warnings": []}


def run(cases, out_path, devices=("cpu",), python=None, timeout=60.0, resume=False,
        progress=None, hooks=None, env=None, plan=None) -> list[RunSummary]:
    """Run every case (or a prebuilt ``plan``) on every device into ``out_path`` (JSONL).
    With ``resume``, cases already in the file for a device are kept and skipped."""
    python = python or sys.executable
    out_path = Path(out_path)
    done: set = set()
    if resume and out_path.exists():
        existing = read(out_path, repair=True)
        done = {(r["id"], r["device"]) for r in existing.results}
    plan = plan if plan is not None else build_plan(cases, hooks)
    summaries = []
    with tempfile.TemporaryDirectory(prefix="kldiv-plan-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        header = {
            "harness": __version__,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cases": len(plan["cases"]),
            "resumed": bool(done),
        }
        with Writer(out_path, append=resume) as writer:
            sup = Supervisor(python, timeout, progress, env)
            for device in devices:
                todo = [i for i, e in enumerate(plan["cases"]) if (e["id"], device) not in done]
                summaries.append(sup.run_device(plan_path, plan, device, todo, writer, header))
    return summaries
