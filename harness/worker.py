"""Stage 3b: the in-environment worker.  Standard library and torch only; Python 3.8+.

Run as a script by the supervisor (harness/runner.py); the host imports it only for
PROTOCOL and protocol_problem (so its top-level imports stay the standard library):

    python worker.py PLAN_JSON INDICES_JSON DEVICE

It writes one JSON object per line to the original stdout (anything torch prints goes
to stderr): {"event": "ready", "env": ...} once, then per case {"event": "start"} and
{"event": "result", ...}, tensors as {"shape", "dtype", "f64": base64 of float64 bytes};
or {"event": "fatal", "message": ...} and a non-zero exit when it cannot run at all (a plan
of another protocol, CUDA missing).
The supervisor turns a missing result into crash/timeout.
"""

import base64
import ctypes
import functools
import gc
import json
import os
import platform
import struct
import sys
import time
import traceback
import warnings

PROTOCOL = 4  # the plan format and its meaning; the plan carries the harness's, checked below


def protocol_problem(found):
    """Why a plan of protocol ``found`` cannot run with this worker (None: it can)."""
    if found == PROTOCOL:
        return None
    if isinstance(found, int) and not isinstance(found, bool) and found > PROTOCOL:
        return (
            f"plan protocol {found} is newer than this worker's protocol {PROTOCOL}: update the harness on this machine"
        )
    what = "a plan without a protocol number" if found is None else f"plan protocol {found!r}"
    return (
        f"{what} is older than this worker's protocol {PROTOCOL}: "
        "rebuild the plan with this harness (python -m harness plan)"
    )


def _emit(stream, obj):
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def environment(torch, device):
    """Once per run: what exactly was tested."""
    env = {
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "cuda": getattr(torch.version, "cuda", None),
        "cudnn": None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device,
        "device_name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda_available": False,
    }
    try:
        env["cuda_available"] = bool(torch.cuda.is_available())
        env["cudnn"] = torch.backends.cudnn.version() if env["cuda_available"] else None
    except Exception:  # noqa: BLE001 - a broken cuDNN must not stop the run
        pass
    if device.startswith("cuda"):
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    env.update(machine_details(torch))
    return env


def _cpu_info():
    """(model name, flags) from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None, None
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = value.split()
    return model, flags


def machine_details(torch):
    """What can make two machines' results differ by an ulp: the CPU and its instruction
    sets, the C library, the BLAS torch was built with, the kernels' CPU capability."""
    model, flags = _cpu_info()
    wanted = (
        "avx",
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "amx_bf16",
        "fma",
        "f16c",
        "sse4_2",
        "asimd",
        "sve",
    )
    out = {
        "cpu_model": model or platform.processor() or None,
        "cpu_flags": sorted(f for f in (flags or ()) if f in wanted) or None,
        "libc": " ".join(platform.libc_ver()).strip() or None,
        "interop_threads": None,
        "cpu_capability": None,
        "blas": None,
    }
    try:
        out["interop_threads"] = torch.get_num_interop_threads()
    except Exception:  # noqa: BLE001 - older releases
        pass
    try:
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # torch >= 2.0
    except Exception:  # noqa: BLE001 - older releases have no such call
        pass
    try:
        config = torch.__config__.show()
        for line in config.splitlines():
            line = line.strip()
            if line.startswith("- BLAS_INFO") or line.startswith("BLAS_INFO"):
                out["blas"] = line.split("=", 1)[-1].strip() or None
            elif "Intel(R) oneAPI Math Kernel Library" in line or "Intel(R) Math Kernel Library" in line:
                out["blas"] = out["blas"] or line.lstrip("- ")
        if out["blas"] is None:
            import re

            m = re.search(r"BLAS_INFO=([^,\s]+)", config)
            out["blas"] = m.group(1) if m else None
    except Exception:  # noqa: BLE001 - a build without __config__
        pass
    return out


def input_tensor(torch, arrays, key, dtype, device, sources):
    """A fresh input tensor for one case: the plan's float64 values rounded to ``dtype``
    on ``device``.  The float64 tensor is built once per array (kept in ``sources``, one
    dict per worker run); every case gets its own copy, so nothing one case does
    (requires_grad, ...) reaches another."""
    src = sources.get(key)
    if src is None:
        obj = arrays[key]
        src = sources[key] = torch.tensor(obj["values"], dtype=torch.float64).reshape(obj["shape"])
    return src.to(device=device, dtype=dtype, copy=True)


def _values(t):
    """A tensor for the supervisor: its values as little-endian float64 bytes in base64
    (exact; the supervisor turns them back into the JSON list of the results file).
    The bytes are read straight from the float64 copy's memory: no Python floats on the
    worker's critical path (the supervisor formats them on its own core)."""
    return {
        "shape": list(t.shape),
        "dtype": _dtype_name(t.dtype),
        "f64": base64.b64encode(_f64_bytes(t)).decode("ascii"),
    }


def _f64_bytes(t):
    """The values of ``t`` as float64 in C order, little-endian bytes."""
    t = t.detach().cpu().double().contiguous()
    n = t.numel()
    if n == 0:
        return b""
    if _LITTLE_ENDIAN:
        return ctypes.string_at(t.data_ptr(), 8 * n)
    flat = t.reshape(-1).tolist()
    return struct.pack(f"<{n}d", *flat)


_LITTLE_ENDIAN = sys.byteorder == "little"


@functools.lru_cache(maxsize=64)  # a few dtypes
def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _legacy(reduction):
    return {
        "none": {"reduce": False},
        "sum": {"size_average": False, "reduce": True},
        "mean": {"size_average": True, "reduce": True},
    }[reduction]


def _call(torch, case, a, b):
    """One kl_div call in the case's API form; log_target is passed only when True."""
    kw = {"log_target": True} if case["log_target"] else {}
    api = case["api"]
    if api in ("legacy_module", "legacy_functional"):
        kw.update(_legacy(case["reduction"]))
    else:
        kw["reduction"] = case["reduction"]
    if api in ("module", "legacy_module"):
        return torch.nn.KLDivLoss(**kw)(a, b)
    return torch.nn.functional.kl_div(a, b, **kw)


def _error(exc, phase):
    msg = str(exc).split("\nException raised from")[0]  # drop C++ stack traces
    return {"phase": phase, "type": type(exc).__name__, "message": msg[:2000]}


def _warnings(caught):
    out, seen = [], set()
    for w in caught:
        key = (w.category.__name__, str(w.message))
        if key not in seen:
            seen.add(key)
            out.append({"category": key[0], "message": key[1][:2000]})
    return out


def _test_hook(hook):
    """Deliberate crash/hang, only when the plan asks and the tests enabled it."""
    if not hook or os.environ.get("HARNESS_TEST_HOOKS") != "1":
        return
    if hook == "crash":
        os.abort()
    if hook == "hang":
        time.sleep(10**6)
    if hook == "exit":
        os._exit(3)


def run_snippet(torch, case, device):
    """Run a code snippet exactly as published (claims); record what it prints and the
    value of each expression.  The snippet runs on the CPU whatever the device."""
    import contextlib
    import io

    rec = {
        "id": case["id"],
        "device": device,
        "output": None,
        "grads": {},
        "grad_errors": {},
        "error": None,
        "warnings": [],
        "printed": [],
    }
    t0 = time.perf_counter()
    buf = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            namespace = {"__name__": "__claim__"}
            with contextlib.redirect_stdout(buf):
                exec(compile(case["snippet"], "<{}>".format(case["id"]), "exec"), namespace)  # noqa: S102
            values = [float(eval(expr, namespace)) for expr in case.get("values", [])]  # noqa: S307
            rec["output"] = {"shape": [len(values)], "dtype": "float64", "values": values}
        except Exception as exc:  # noqa: BLE001
            rec["error"] = _error(exc, "snippet")
    rec["printed"] = buf.getvalue().splitlines()[:100]
    rec["warnings"] = _warnings(caught)
    rec["seconds"] = time.perf_counter() - t0
    return rec


def run_case(torch, case, arrays, device, sources=None):
    """Run one case; every failure is data in the returned record."""
    rec = {
        "id": case["id"],
        "device": device,
        "output": None,
        "grads": {},
        "grad_errors": {},
        "error": None,
        "warnings": [],
    }
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _test_hook(case.get("hook"))
            dtype = getattr(torch, case["dtype"], None)
            if dtype is None:
                raise TypeError("torch has no dtype {!r}".format(case["dtype"]))
            sources = {} if sources is None else sources
            a = input_tensor(torch, arrays, case["first"], dtype, device, sources)
            b = input_tensor(torch, arrays, case["second"], dtype, device, sources)
            if case.get("grad"):
                a.requires_grad_(True)
                b.requires_grad_(True)
            out = _call(torch, case, a, b)
            rec["output"] = _values(out)
        except Exception as exc:  # noqa: BLE001 - recorded, classified on the host
            rec["error"] = _error(exc, "forward")
        if rec["output"] is not None and case.get("grad"):
            for name, leaf in (("first", a), ("second", b)):
                try:
                    (g,) = torch.autograd.grad(out, [leaf], torch.ones_like(out), retain_graph=True, allow_unused=True)
                    rec["grads"][name] = None if g is None else _values(g)
                except Exception as exc:  # noqa: BLE001
                    rec["grad_errors"][name] = _error(exc, "backward")
            _second_order(torch, rec, out, a, b)
        if device.startswith("cuda"):
            try:
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - an async CUDA error belongs to this case
                rec["error"] = rec["error"] or _error(exc, "synchronize")
    rec["warnings"] = _warnings(caught)
    rec["seconds"] = time.perf_counter() - t0
    return rec


SECOND_ORDER = (("first", "first"), ("second", "first"), ("first", "second"), ("second", "second"))  # (outer, inner)


def _second_order(torch, rec, out, a, b):
    """Double backward: for each argument (inner), its gradient made with create_graph=True,
    summed, then differentiated w.r.t. each argument (outer); stored under "OUTER of INNER"
    (harness.phases).  An argument the gradient does not depend on gets zeros, as
    autograd.grad(materialize_grads=True) defines; one that cannot be differentiated, the
    error.  The first-order values above are kept from the plain backward."""
    leaves = {"first": a, "second": b}
    for inner in ("first", "second"):
        try:
            (g,) = torch.autograd.grad(out, [leaves[inner]], torch.ones_like(out), create_graph=True, allow_unused=True)
            if g is None:
                raise RuntimeError(f"no gradient w.r.t. the {inner} argument to differentiate again")
            total = g.sum()
        except Exception as exc:  # noqa: BLE001
            for outer in ("first", "second"):
                rec["grad_errors"][f"{outer} of {inner}"] = _error(exc, "double backward")
            continue
        for outer in ("first", "second"):
            key = f"{outer} of {inner}"
            try:
                (h,) = torch.autograd.grad(total, [leaves[outer]], retain_graph=True, allow_unused=True)
                rec["grads"][key] = _values(torch.zeros_like(leaves[outer]) if h is None else h)
            except Exception as exc:  # noqa: BLE001
                rec["grad_errors"][key] = _error(exc, "double backward")


def _die_with_supervisor():
    """The worker runs in its own session (so a hang can be killed as a group); make sure
    it never outlives the supervisor, even one killed with SIGKILL."""
    supervisor = int(os.environ.get("HARNESS_SUPERVISOR_PID", "0") or 0)
    try:  # Linux: the kernel sends SIGKILL when the parent dies
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the watcher below still works
        pass
    if supervisor and os.getppid() != supervisor:  # died before prctl took effect
        os._exit(70)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != (supervisor or os.getppid()) or os.getppid() == 1:
                os._exit(70)

    import threading

    threading.Thread(target=watch, daemon=True).start()


def main(argv):
    plan_path, indices_path, device = argv[1], argv[2], argv[3]
    _die_with_supervisor()
    proto = os.fdopen(os.dup(1), "w")  # results channel
    os.dup2(2, 1)  # anything else printed to stdout goes to stderr
    t0 = time.perf_counter()
    try:
        import torch
    except ImportError as exc:  # the interpreter of another environment was meant
        _emit(
            proto,
            {
                "event": "fatal",
                "message": f"torch cannot be imported by {sys.executable} ({exc}): pass --python with the "
                "interpreter of an environment that has torch (e.g. .nox/run-torch-2-5/bin/python), or run nox",
            },
        )
        return 2

    import_seconds = time.perf_counter() - t0
    gc.freeze()  # torch's many module objects: out of every later collection's way
    with open(plan_path) as f:
        plan = json.load(f)
    problem = protocol_problem(plan.get("protocol"))
    if problem:
        _emit(proto, {"event": "fatal", "message": problem})
        return 2
    with open(indices_path) as f:
        indices = json.load(f)
    if device.startswith("cuda") and not torch.cuda.is_available():
        _emit(proto, {"event": "fatal", "message": "CUDA requested but torch.cuda.is_available() is False"})
        return 2
    env = environment(torch, device)
    env["import_seconds"] = import_seconds
    _emit(proto, {"event": "ready", "protocol": PROTOCOL, "env": env})
    cases = plan["cases"]
    sources = {}  # array key -> its float64 CPU tensor, built once for this run
    finished = ""  # the last result goes out with the next start: one write and flush per case
    for i in indices:
        proto.write(f'{finished}{{"event": "start", "index": {i}}}\n')
        proto.flush()
        try:
            if "snippet" in cases[i]:
                rec = run_snippet(torch, cases[i], device)
            else:
                rec = run_case(torch, cases[i], plan["arrays"], device, sources)
        except BaseException as exc:  # noqa: BLE001 - keep the run going
            rec = {
                "id": cases[i]["id"],
                "device": device,
                "error": _error(exc, "harness"),
                "traceback": traceback.format_exc()[-2000:],
            }
        rec["event"] = "result"
        rec["index"] = i
        finished = json.dumps(rec) + "\n"
    proto.write(finished)
    _emit(proto, {"event": "done"})
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # every result is written and flushed: skip torch's slow interpreter teardown
