"""Text of the report: values, ranges and reproductions as strings (no markup here:
escaping belongs to the templates, Markdown's to :func:`md_escape`)."""

from __future__ import annotations

import math
import re

import numpy as np

from .. import tensors
from ..memo import Memo

INLINE_LIMIT = 64  # reproduction snippets inline tensors up to this many elements
VALUES_SHOWN = 8  # values shown per output in tables
VALUES_SHOWN_DETAIL = 24  # ... and in per-case detail
MEANING_TEXT = {"logprob": "log-probabilities", "prob": "probabilities"}
STANDARD_DEVICES = ("cpu", "cuda")  # always shown, as 'not run' where no results exist

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_TEXT = 10_000  # characters of any one text shown; longer ones are cut with a note


def visible(text: str) -> str:
    """Control characters (ANSI escapes, bells, ...) as visible \\xNN text; very long
    text cut to MAX_TEXT characters."""
    text = "" if text is None else str(text)
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}… ({len(text) - MAX_TEXT} more characters)"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_escape(value) -> str:
    """Escape text for Markdown, table cells included: HTML is neutralised, Markdown
    punctuation that could start code, emphasis, links or a cell break is backslashed,
    newlines become <br>."""
    text = visible("" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def md_code(value) -> str:
    """Text as inline Markdown code: a fence longer than any run of backticks in it."""
    text = visible(value).replace("\r", " ").replace("\n", " ").replace("|", "¦")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _special_text(v: float) -> str | None:
    """Text of nan, +-inf and signed zero (the values with one exact spelling), else None."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    return None


_FLOAT_TEXT = Memo(1 << 20)  # finite non-zero value -> fmt_float text (zeros differ by sign, equal as keys)


def fmt_float(v) -> str:
    """Stable short float text: 6 significant digits, signed zero and specials kept."""
    v = float(v)
    text = _FLOAT_TEXT.get(v) if v else None
    if text is None:
        special = _special_text(v)
        if special is not None:
            return special
        s = format(v, ".6g")
        text = _FLOAT_TEXT[v] = s if any(c in s for c in ".e") else s + ".0"
    return text


def fmt_values(shape, values, limit=VALUES_SHOWN, undefined=None) -> str:
    """An output or reference array as one line of text."""
    shape = list(shape)
    if not shape:
        return "undefined" if undefined is not None and undefined[0] else fmt_float(values[0])
    if not len(values):
        return f"empty, shape {'x'.join(map(str, shape))}"
    shown = ["undef" if undefined is not None and undefined[i] else fmt_float(v) for i, v in enumerate(values[:limit])]
    more = ", …" if len(values) > limit else ""
    return f"[{', '.join(shown)}{more}] shape {'x'.join(map(str, shape))}"


def fmt_output(out, limit=VALUES_SHOWN) -> str:
    if out is None:
        return ""
    if tensors.is_summary(out):
        return f"{tensors.describe(out)} shape {'x'.join(map(str, out['shape']))}"
    return fmt_values(out["shape"], out["values"], limit)


def device_key(device: str) -> tuple:
    """Devices in display order: cpu, cuda, then any other (by name)."""
    base = device.split(":")[0]
    order = STANDARD_DEVICES.index(base) if base in STANDARD_DEVICES else len(STANDARD_DEVICES)
    return (order, device)


def ranges(indices, labels) -> str:
    """Sorted indices into ``labels`` -> '1.6–1.9, 1.11' (runs of adjacent indices)."""
    out, start, prev = [], None, None
    for i in sorted(set(indices)):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append((start, prev))
            start = prev = i
    if start is not None:
        out.append((start, prev))
    return ", ".join(labels[a] if a == b else f"{labels[a]}–{labels[b]}" for a, b in out)


def index_runs(indices) -> list[tuple[int, int]]:
    out = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, (np.floating,)):
        return json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def axis_text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


_SHORT_CACHE = Memo(1 << 18)


def short_literal(v: float, dtype: str) -> str:
    """The shortest decimal that gives back exactly ``v`` in ``dtype`` (v is representable
    there), both converting directly and through float32 (as some torch builds do)."""
    v = float(v)
    key = (v, dtype)
    hit = _SHORT_CACHE.get(key) if v else None  # zeros differ by sign, equal as keys: not kept
    if hit is not None:
        return hit
    special = _special_text(v)
    if special is not None:
        return special
    if dtype == "float64":
        return repr(v)
    if key not in _SHORT_CACHE:
        from ..inputs import round_to_dtype

        text = repr(v)
        cands = [format(v, f".{digits}g") for digits in range(1, 18)]  # every length in one NumPy call
        xs = np.array([float(c) for c in cands])
        back = round_to_dtype(np.concatenate([xs, xs.astype(np.float32).astype(np.float64)]), dtype)
        ok = (back[: len(cands)] == v) & (back[len(cands) :] == v)
        if ok.any():
            cand = cands[int(np.argmax(ok))]  # the shortest that works
            text = cand if any(c in cand for c in ".e") else cand + ".0"
        _SHORT_CACHE[key] = text
    return _SHORT_CACHE[key]


_LITERALS = Memo(1 << 14)  # (dtype, shape, float64 bytes) -> _literal text: cases share their inputs


def literal(array: np.ndarray, dtype: str = "float64") -> str:
    def nest(a):
        if isinstance(a, list):
            return "[" + ", ".join([nest(x) for x in a]) + "]"
        return short_literal(a, dtype)

    array = np.asarray(array, dtype=np.float64)
    key = (dtype, array.shape, array.tobytes())
    if key not in _LITERALS:
        _LITERALS[key] = nest(array.tolist())  # Python floats: the same values, far faster to walk
    return _LITERALS[key]


def call_text(case, first: str, second: str) -> str:
    """The case's kl_div call as Python, on the variables ``first`` and ``second`` (the
    worker's _call: its API form, reduction or legacy arguments, log_target when True)."""
    from ..worker import _legacy

    if case.api in ("legacy_module", "legacy_functional"):
        kw = [f"{k}={v!r}" for k, v in _legacy(case.reduction).items()]
    else:
        kw = [f"reduction={case.reduction!r}"]
    if case.log_target:
        kw.append("log_target=True")
    if case.api in ("module", "legacy_module"):
        return f"torch.nn.KLDivLoss({', '.join(kw)})({first}, {second})"
    return f"torch.nn.functional.kl_div({first}, {second}, {', '.join(kw)})"


def reproduction(case, devices) -> str:
    """Python that builds the case's exact tensors and makes its call (as the worker does)."""
    from ..inputs import call_inputs

    ci = call_inputs(case)
    dt = f"torch.{case.dtype}"
    grad = case.family.grad
    ins, tgs = MEANING_TEXT[ci.input_meaning], MEANING_TEXT[ci.target_meaning]
    if case.order == "swapped":
        comments = (
            f"input position, holding the target ({tgs}): arguments swapped",
            f"target position, holding the prediction ({ins})",
        )
    else:
        comments = (f"input: the prediction as {ins}", f"target: {tgs}")
    dev = devices[0] if devices else "cpu"
    rg = ", requires_grad=True" if grad else ""
    lines = [f"# {case.id}", "import torch", ""]
    big = max(ci.first.size, ci.second.size) > INLINE_LIMIT
    if big:
        lines = [
            f"# {case.id}",
            f"# {ci.first.size} + {ci.second.size} input values are too many to inline: run this in the harness",
            "# checkout, where the case files and the seeded generator rebuild the exact values.",
            "import torch",
            "from harness.cases import load_cases",
            "from harness.inputs import call_inputs",
            "",
            f"ci = call_inputs({{c.id: c for c in load_cases()}}[{case.id!r}])",
        ]
    else:
        lines.append('nan, inf = float("nan"), float("inf")')
    lines.append(f"device = {dev!r}  # results for this case: {', '.join(devices) or 'none'}")
    for name, arr, comment in (("first", ci.first, comments[0]), ("second", ci.second, comments[1])):
        if big:
            expr = f"torch.tensor(ci.{name}.tolist(), dtype=torch.float64).to(device=device, dtype={dt})" + (
                ".requires_grad_()" if grad else ""
            )
        elif arr.size == 0:
            expr = f"torch.empty({tuple(arr.shape)!r}, dtype={dt}, device=device{rg})"
        else:
            expr = f"torch.tensor({literal(arr, case.dtype)}, dtype={dt}, device=device{rg})"
        lines.append(f"# {comment}")
        lines.append(f"{name} = {expr}")
    lines += [f"loss = {call_text(case, 'first', 'second')}", "print(loss)"]
    if grad:
        lines += ["loss.backward(torch.ones_like(loss))", "print(first.grad, second.grad)"]
    return "\n".join(lines) + "\n"


def clip(text, limit) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
