"""Stage 7: the compatibility report (transitional: delegates to the previous renderer)."""

from . import _legacy


def __getattr__(name):
    return getattr(_legacy, name)
