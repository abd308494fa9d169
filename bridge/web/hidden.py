"""The PVS's secrets stay in: variables named by `clients.hidden_vars` never reach a client.

An entry starting with "/" is a full variable name, any other a part of a name; both
compare without regard to case (hiding too much is the safe side). A hidden variable
is, to a client, one that does not exist: `name=` answers as if there were no such
variable, `match=` leaves it out, whatever `clients.trusted_lan` says. A query for hidden
names never reaches the PVS (nothing to cache, nothing to log), and an answer from the
PVS loses its hidden variables before it is stored or served.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from bridge.pvs.answer import Answer
from bridge.web.vars_query import NOTHING_MATCHED, VarsQuery


class HiddenVars:
    """Which variable names clients never see."""

    def __init__(self, entries: Iterable[str]) -> None:
        listed = [entry.lower() for entry in entries if entry]
        self.names = frozenset(entry for entry in listed if entry.startswith("/"))
        self.parts = tuple(entry for entry in listed if not entry.startswith("/"))

    def hides(self, name: str) -> bool:
        """Whether the variable `name` is withheld from clients."""
        folded = name.lower()
        return folded in self.names or any(part in folded for part in self.parts)

    def hides_match(self, match: str) -> bool:
        """Whether a `match=` names a hidden entry: then whatever it could select is taken
        for hidden (a part entry: every name it selects contains that part)."""
        folded = match.lower()
        return any(entry in folded for entry in (*self.names, *self.parts))

    def visible(self, variables: Mapping[str, str]) -> dict[str, str]:
        """`variables` without the hidden ones, in their order."""
        return {name: value for name, value in variables.items() if not self.hides(name)}

    def for_pvs(self, query: VarsQuery) -> VarsQuery | None:
        """The query as it may reach the PVS: hidden names left out; None when nothing
        it asks for may be asked (it is answered as matching nothing, by the bridge)."""
        if query.names:
            names = tuple(name for name in query.names if not self.hides(name))
            if len(names) == len(query.names):
                return query
            return replace(query, names=names) if names else None
        if query.match is not None and self.hides_match(query.match):
            return None
        return query

    def answer_without(self, answer: Answer) -> Answer:
        """A PVS `/vars` answer without its hidden variables (400 when none is left)."""
        if not answer.ok:
            return answer
        try:
            document = json.loads(answer.body)
        except (ValueError, RecursionError):
            return answer  # not a variable listing: the cache judges it
        kept = self._document_without(document)
        if kept is None:
            return answer  # nothing hidden in it: the PVS's bytes, unchanged
        if not kept:
            return replace(answer, status=400, body=NOTHING_MATCHED, header_memo={})
        body = (json.dumps(kept, indent=2) + "\n").encode()
        return replace(answer, body=body, header_memo={})

    def _document_without(self, document: Any) -> dict[str, Any] | None:
        """The document without hidden variables ({} when none is left), or None when it
        holds none to drop."""
        if not isinstance(document, dict):
            return None
        values = document.get("values")
        if isinstance(values, list) and "count" in document:  # the list form
            kept = [item for item in values if not self._hidden_item(item)]
            if len(kept) == len(values):
                return None
            return {"count": len(kept), "values": kept} if kept else {}
        found = {name: value for name, value in document.items() if not self.hides(str(name))}
        return None if len(found) == len(document) else found  # the obj form

    def _hidden_item(self, item: object) -> bool:
        return isinstance(item, dict) and self.hides(str(item.get("name", "")))


def nothing_matched() -> Answer:
    """The PVS's answer to a query that selects no variable."""
    return Answer(400, NOTHING_MATCHED, "application/json")
