"""Composer names and their conditioning ids, on their own so a checkpoint can load them without
the MAESTRO data code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comagen.errors import ComagenError

NO_COMPOSER = "<none>"  # id 0: unconditional


class Composers:
    """Composer name <-> conditioning id; id 0 means unconditional (no composer)."""

    def __init__(self, names: list[str]) -> None:
        self.names = [NO_COMPOSER, *names]
        self._ids = {n: i for i, n in enumerate(self.names)}

    @classmethod
    def from_pieces(cls, pieces: list[Any]) -> Composers:
        """The composers named by some pieces (anything with a `.composer`), sorted."""
        return cls(sorted({p.composer for p in pieces if p.composer}))

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str | None) -> int:
        return self._ids.get(name or "", 0)

    def find(self, query: str) -> int:
        """Id of the composer whose name contains `query` (case-insensitive), e.g. 'chopin'."""
        if not query:
            return 0
        if query in self._ids:
            return self._ids[query]
        hits = [i for i, n in enumerate(self.names[1:], 1) if query.lower() in n.lower()]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ComagenError(f"unknown composer {query!r}; try one of: {', '.join(self.names[1:8])}, ...")
        exact = [i for i in hits if self.names[i].lower().endswith(query.lower())]
        if len(exact) == 1:
            return exact[0]
        raise ComagenError(f"composer {query!r} is ambiguous: {', '.join(self.names[i] for i in hits[:6])}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({str(i): n for i, n in enumerate(self.names)}, indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Composers:
        return cls.from_table(json.loads(Path(path).read_text()))

    @classmethod
    def from_table(cls, table: dict[str, str]) -> Composers:
        """From the saved {"0": "<none>", "1": name, ...} table."""
        return cls([table[str(i)] for i in range(1, len(table))])
