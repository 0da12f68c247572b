"""Stage 3a: the supervisor.  Builds the plan on the host, runs it in a worker process
(inside the torch environment) and survives crashes and hangs case by case.

The worker runs many cases per process (fast); when it dies or a case passes its
timeout, the case in flight is recorded as crash/timeout and a fresh worker goes on
with the next case.  Every finished result is appended to the JSONL file at once.
With ``jobs`` > 1 the cases of a device are dealt round-robin to that many workers
running side by side (one supervising thread each), so a run uses every core.
"""

from __future__ import annotations

import base64
import collections
import datetime as _dt
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, tensors
from .results import SCHEMA_VERSION, Writer, device_folder, drop_results, read, sort_in_plan_order
from .worker import PROTOCOL, protocol_problem  # standard library only at import

WORKER = Path(__file__).resolve().parent / "worker.py"
STARTUP_TIMEOUT = 300.0  # importing an old torch from a cold disk can be slow
MAX_STARTUP_FAILURES = 2
MAX_JOBS = 4  # default ceiling: each worker holds its own torch (~0.3-0.5 GB)
CASES_PER_JOB = 500  # a smaller share is not worth another torch import (~1 s of CPU)
POLL = 0.5  # seconds between checks for a stop request while waiting on a worker


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
    jobs: int = 1
    env: dict = field(default_factory=dict)


def default_jobs(device: str) -> int:
    """Workers per device when not told: one per usable core (at most MAX_JOBS) on the
    CPU; one on a GPU, which runs one case at a time anyway."""
    if device != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def jobs_for(device: str, jobs: int | None, cases: int) -> int:
    """How many workers to start for ``cases`` cases: ``jobs`` (None or 0: the default),
    no more than one per CASES_PER_JOB cases."""
    wanted = jobs or default_jobs(device)
    return max(1, min(wanted, -(-cases // CASES_PER_JOB)))


class _Shared:
    """What the workers of one device share: the results file (one writer at a time),
    the run header (written once), progress counts and a stop flag."""

    def __init__(self, writer, total, skipped, progress, device):
        self.writer = writer
        self.lock = threading.Lock()
        self.header_written = False
        self.stop = threading.Event()
        self.total, self.done, self.device = total, skipped, device
        self.progress = progress
        self.t0 = self.last_report = time.perf_counter()

    def write(self, rec: dict) -> None:
        with self.lock:
            self.writer.write(rec)

    def header(self, rec: dict) -> None:
        with self.lock:
            if not self.header_written:
                self.writer.write(rec)
                self.header_written = True

    def tick(self) -> None:
        with self.lock:
            self.done += 1
            now = time.perf_counter()
            if now - self.last_report < 2.0:
                return
            self.last_report = now
        self.progress(f"[{self.device}] {self.done}/{self.total} cases, {now - self.t0:.1f}s")


class _Events:
    """A worker's events, read from its stdout in this thread (no reader thread, no
    queue): ``next(wait, stop)`` returns the next event, None at EOF, and raises
    _NoEvent when ``wait`` seconds pass without one or _Stopped once ``stop`` is set."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.partial = b""
        self.pending = collections.deque()
        self.eof = False

    def next(self, wait, stop):
        deadline = time.monotonic() + wait
        while not self.pending:
            if self.eof:
                return None
            if stop.is_set():
                raise _Stopped
            left = deadline - time.monotonic()
            if left <= 0:
                raise _NoEvent
            if self.selector.select(min(left, POLL)):
                self._read()
        return self.pending.popleft()

    def _read(self):
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.eof = True
            lines, self.partial = [self.partial], b""
        else:
            *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                self.pending.append(json.loads(line))
            except ValueError:
                self.pending.append({"event": "noise", "text": line[:500].decode("utf-8", "replace")})

    def close(self):
        self.selector.close()


class _NoEvent(Exception):
    """No event from the worker within the wait."""


class _Stopped(Exception):
    """Another worker of the same device failed (or the run was interrupted)."""


def build_plan(cases, hooks: dict | None = None, extra_entries=()) -> dict:
    """The worker's input: one entry per case (plus ready-made entries such as the
    claims' snippets), each with a digest of its inputs."""
    from .inputs import input_digest, plan_entry  # NumPy lives on the host only

    entries, arrays = [], {}
    for extra in extra_entries:
        entries.append({**extra, "digest": input_digest(extra)})
    for case in cases:
        entry = plan_entry(case, arrays)
        entry["digest"] = input_digest(entry)
        if hooks and case.id in hooks:
            entry["hook"] = hooks[case.id]
        entries.append(entry)
    return {"protocol": PROTOCOL, "arrays": arrays, "cases": entries}


def check_protocol(plan: dict) -> None:
    """Raise RunnerError when ``plan`` was made for another protocol than this harness's
    worker (PROTOCOL): checked before any worker (and its torch) starts."""
    problem = protocol_problem(plan.get("protocol"))
    if problem:
        raise RunnerError(problem)


def _unpack(tensor):
    """A worker tensor {shape, dtype, f64: base64 float64 bytes} -> {shape, dtype, values};
    one of more than harness.tensors.LIMIT elements -> {shape, dtype, array} (a NumPy
    array, for the summariser: see :func:`_bounded`)."""
    if isinstance(tensor, dict) and "f64" in tensor:
        raw = base64.b64decode(tensor.pop("f64"))
        if len(raw) // 8 > tensors.LIMIT:
            import numpy as np

            tensor["array"] = np.frombuffer(raw, dtype="<f8").reshape(tensor["shape"])
        else:
            tensor["values"] = list(struct.unpack(f"<{len(raw) // 8}d", raw))
    return tensor


def _bounded(rec: dict, summarize=None) -> dict:
    """``rec`` with every decoded array in its summary form (harness.tensors): by
    ``summarize`` (which adds the reference checks the verdict needs), else without
    checks.  A record's size then no longer grows with its tensors'."""
    tensors_of = [rec.get("output"), *(rec.get("grads") or {}).values()]
    if not any(isinstance(t, dict) and "array" in t for t in tensors_of):
        return rec
    if summarize is not None:
        rec = summarize(rec)
    if isinstance(rec.get("output"), dict) and "array" in rec["output"]:
        rec["output"] = tensors.summarize(rec["output"]["array"], rec["output"]["dtype"])
    for name, g in (rec.get("grads") or {}).items():
        if isinstance(g, dict) and "array" in g:
            rec["grads"][name] = tensors.summarize(g["array"], g["dtype"])
    return rec


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
    def __init__(self, python, timeout, progress=None, env=None, summarize=None):
        self.python = python
        self.summarize = summarize  # bounds a record's large tensors, with their checks (see _bounded)
        self.timeout = timeout
        self.progress = progress or (lambda msg: None)
        self.env = env

    def run_device(self, plan_path, plan, device, todo, writer, header_extra, jobs=1) -> RunSummary:
        """Run the cases ``todo`` (plan indices) on ``device`` with ``jobs`` workers."""
        todo = list(todo)
        total = len(plan["cases"])
        shared = _Shared(writer, total, total - len(todo), self.progress, device)
        t0 = time.perf_counter()
        shares = [todo[k::jobs] for k in range(jobs)] if jobs > 1 else [todo]
        if len(shares) == 1:
            parts = [self._run_share(plan_path, plan, device, todo, header_extra, shared, "")]
        else:
            parts = self._run_shares(plan_path, plan, device, shares, header_extra, shared)
        summary = RunSummary(
            device=device,
            total=total,
            skipped=total - len(todo),
            jobs=len(shares),
            env=next((p.env for p in parts if p.env), {}),
        )
        for part in parts:
            summary.finished += part.finished
            summary.crashed += part.crashed
            summary.timed_out += part.timed_out
            summary.restarts += part.restarts
        summary.seconds = time.perf_counter() - t0
        return summary

    def _run_shares(self, plan_path, plan, device, shares, header_extra, shared) -> list:
        """One thread per share; the first failure stops the others and is raised."""
        parts, errors = [None] * len(shares), []

        def work(k):
            try:
                parts[k] = self._run_share(plan_path, plan, device, shares[k], header_extra, shared, f"-{k}")
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
                errors.append(exc)
                shared.stop.set()

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(shares))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(POLL)
        except BaseException:  # Ctrl-C / SIGTERM: stop the workers before the writer closes
            shared.stop.set()
            for t in threads:
                t.join()
            raise
        if errors:
            raise errors[0]
        return parts

    def _run_share(self, plan_path, plan, device, todo, header_extra, shared, tag) -> RunSummary:
        """One worker (restarted after a crash or timeout) through ``todo``."""
        summary = RunSummary(device=device, total=len(todo))
        startup_failures = stalls = 0
        workdir = Path(plan_path).parent
        while todo:
            idx_path = workdir / f"indices-{device.replace(':', '_')}{tag}.json"
            idx_path.write_text(json.dumps(todo))
            err_path = workdir / f"stderr-{device.replace(':', '_')}{tag}.log"
            err = open(err_path, "ab")
            err_start = err.tell()
            proc = subprocess.Popen(
                [self.python, str(WORKER), str(plan_path), str(idx_path), device],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                env={**(self.env or os.environ), "HARNESS_SUPERVISOR_PID": str(os.getpid())},
            )
            events = _Events(proc.stdout)
            current, ready = None, False
            done_indices = set()
            try:
                while True:
                    wait = STARTUP_TIMEOUT if not ready else self.timeout
                    try:
                        ev = events.next(wait, shared.stop)
                    except _NoEvent:
                        if not ready:
                            _kill(proc)
                            raise RunnerError(
                                f"worker did not start within {STARTUP_TIMEOUT:.0f}s: {_tail(err_path, err_start)}"
                            )
                        _kill(proc)
                        if current is None:  # stalled between cases: restart, nothing to record
                            break
                        shared.write(
                            self._failure(
                                plan,
                                current,
                                device,
                                "timeout",
                                f"no result within {self.timeout:g}s",
                                err_path,
                                err_start,
                            )
                        )
                        shared.tick()
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
                            shared.write(
                                self._failure(
                                    plan, current, device, "crash", _exit_detail(proc.returncode), err_path, err_start
                                )
                            )
                            shared.tick()
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
                        shared.header(
                            {
                                "record": "run",
                                "schema": SCHEMA_VERSION,
                                "device": device,
                                "env": ev["env"],
                                **header_extra,
                            }
                        )
                    elif kind == "start":
                        current = ev["index"]
                    elif kind == "result":
                        i = ev.pop("index")
                        ev.pop("event")
                        entry = plan["cases"][i]
                        _unpack(ev.get("output"))
                        for g in (ev.get("grads") or {}).values():
                            _unpack(g)
                        rec = {"record": "result", "status": "ok", "digest": entry["digest"], **ev}
                        shared.write(_bounded(rec, self.summarize))
                        shared.tick()
                        summary.finished += 1
                        done_indices.add(i)
                        current = None
                    elif kind == "done":
                        proc.wait()
                        break
            finally:
                err.close()
                events.close()
                proc.stdout.close()
                if proc.poll() is None:
                    _kill(proc)
            todo = [i for i in todo if i not in done_indices]
            stalls = 0 if done_indices else stalls + 1
            if todo and stalls >= MAX_STARTUP_FAILURES:
                raise RunnerError(
                    f"{device}: worker restarted {stalls} times without finishing a case:\n{_tail(err_path, err_start)}"
                )
            if todo:
                summary.restarts += 1
        return summary

    @staticmethod
    def _failure(plan, index, device, status, detail, err_path, err_start):
        entry = plan["cases"][index]
        return {
            "record": "result",
            "status": status,
            "id": entry["id"],
            "device": device,
            "digest": entry["digest"],
            "detail": detail,
            "stderr": _tail(err_path, err_start, 800),
            "output": None,
            "grads": {},
            "grad_errors": {},
            "error": None,
            "warnings": [],
        }


def run(
    cases,
    out_path,
    devices=("cpu",),
    python=None,
    timeout=60.0,
    resume=False,
    progress=None,
    hooks=None,
    env=None,
    plan=None,
    jobs=None,
    summarize=None,
) -> list[RunSummary]:
    """Run every case (or a prebuilt ``plan``) on every device into ``out_path`` (JSONL).
    With ``resume``, cases already in the file for a device are kept and skipped.
    ``jobs``: workers per device (None: see jobs_for).  ``summarize``: bounds a record's
    large tensors with their reference checks (harness.evaluate.summarizer); without it
    they are summarised without checks (see _bounded)."""
    python = python or sys.executable
    out_path = Path(out_path)
    done: set = set()
    plan = plan if plan is not None else build_plan(cases, hooks)
    check_protocol(plan)
    if resume and out_path.exists():
        existing = read(out_path, repair=True)  # (cuts a truncated last line)
        # a result recorded from other inputs than the plan's is stale: run again, not kept
        digests = {e["id"]: e.get("digest") for e in plan["cases"]}

        def stale(r):
            return r.get("digest") not in (None, digests.get(r["id"], r.get("digest")))

        if any(stale(r) for r in existing.results):
            n = drop_results(out_path, stale)
            if progress:
                progress(f"{out_path}: {n} stale results (inputs changed since they were recorded) run again")
        done = {(r["id"], r["device"]) for r in existing.results if not stale(r)}
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
            sup = Supervisor(python, timeout, progress, env, summarize)
            for device in devices:
                todo = [i for i, e in enumerate(plan["cases"]) if (e["id"], device) not in done]
                n = jobs_for(device, jobs, len(todo))
                summaries.append(sup.run_device(plan_path, plan, device, todo, writer, {**header, "jobs": n}, n))
    if out_path.exists():  # the workers finish in any order: the file is kept in plan order
        sort_in_plan_order(out_path, [e["id"] for e in plan["cases"]])
    return summaries


def run_devices(
    plan,
    out_template,
    devices=("auto",),
    python=None,
    timeout=60.0,
    resume=False,
    progress=None,
    jobs=None,
    summarize=None,
) -> list[RunSummary]:
    """Run ``plan`` on each device in turn, each into ``out_template`` with '{device}'
    replaced by the device ('cuda:1' -> 'cuda1').  'auto' is the cpu, then cuda when the
    cpu's worker saw a GPU (no torch import here).  The claims' snippets are CPU code:
    they run in the cpu pass only.  One summary per device run; RunnerError as run."""
    progress = progress or (lambda msg: None)
    check_protocol(plan)  # before any worker starts
    queue, summaries, last_env = list(devices), [], {}
    while queue:
        device = queue.pop(0)
        if device == "auto":  # cpu now; cuda after it if the worker saw a GPU (no extra torch import)
            device = "cpu"
            queue.insert(0, "auto-cuda")
        elif device == "auto-cuda":
            if not last_env.get("cuda_available"):
                continue
            device = "cuda"
        out = Path(str(out_template).replace("{device}", device_folder(device)))
        device_plan = plan
        if device != "cpu":  # published snippets are CPU code: they run with the cpu pass only
            device_plan = {**plan, "cases": [e for e in plan["cases"] if "snippet" not in e]}
        progress(f"[{device}] {len(device_plan['cases'])} cases -> {out}")
        (summary,) = run(
            None,
            out,
            devices=[device],
            python=python,
            timeout=timeout,
            resume=resume,
            progress=progress,
            plan=device_plan,
            jobs=jobs,
            summarize=summarize,
        )
        last_env = summary.env
        summaries.append(summary)
        progress(
            f"[{device}] done in {summary.seconds:.1f}s by {summary.jobs} worker(s): {summary.finished} finished, "
            f"{summary.crashed} crashed, {summary.timed_out} timed out, {summary.skipped} already present, "
            f"{summary.restarts} worker restarts"
        )
    return summaries
