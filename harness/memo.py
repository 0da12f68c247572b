"""A bounded memo: what the pipeline keeps to avoid computing the same thing twice."""

from __future__ import annotations

import itertools


class Memo:
    """A memo of at most ``size`` entries: when it is full, the oldest quarter is dropped
    (what it holds can always be computed again, the same).  ``data``: entries to start
    with (the dict itself is kept when it fits)."""

    __slots__ = ("data", "size")

    def __init__(self, size: int, data: dict | None = None):
        self.size = max(1, size)
        data = data or {}
        if len(data) > self.size:  # the newest ones
            data = dict(itertools.islice(data.items(), len(data) - self.size, None))
        self.data: dict = data

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key) -> bool:
        return key in self.data

    def get(self, key, default=None):
        return self.data.get(key, default)

    def put(self, key, value):
        """Keep ``value`` for ``key``; returns it."""
        data = self.data
        if len(data) >= self.size and key not in data:
            for old in list(itertools.islice(data, max(1, self.size // 4))):
                del data[old]
        data[key] = value
        return value

    def __getitem__(self, key):
        return self.data[key]

    def __setitem__(self, key, value) -> None:
        self.put(key, value)

    def pop(self, key, default=None):
        return self.data.pop(key, default)

    def clear(self) -> None:
        self.data.clear()
