"""Request ids stored compactly, exactly, and readable in plain SQL (issue 14).

A request id was the largest part of a stored call: its text in the row (~21-48 bytes) and again in the
unique index that deduplicates by it. Most ids are a fixed *shape* — a word prefix and hex digits at fixed
places ("req-00001234-9f3a0c1e", UUIDs, "req_" + 32 hex, an OTLP trace id + span id) or a word prefix and
an opaque body ("chatcmpl-" + 29 base62, "msg_01..."). A database has few shapes, so each shape is kept
once in request_id_shapes, and a call's id is stored as a BLOB: one byte naming the shape, then the hex
digits packed two to a byte (or the opaque body as it is). "req-00001234-9f3a0c1e" takes 9 bytes
instead of 21, a UUID 17 instead of 36.

Exact: the stored form is a function of the id and the shapes table, and the usage_records view turns
it back into the very same text (in SQL, so any SQLite client reads it), so two ids are stored alike
only if they are the same id — the unique index deduplicates exactly, with no hash to verify. The shapes
table only grows (at most MAX_SHAPES rows, never pruned); an id whose shape is not there when the table
is full, or that fits no shape (not printable ASCII, say), is stored as its own TEXT, which never equals
a BLOB. Since a missing shape is only ever added inside the write transaction that stores the call, the
same id is stored the same way by every process at every time.
"""

from __future__ import annotations

import json
import re
import sqlite3
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, cast

MAX_SHAPES = 255  # one byte names the shape
GROUPS = 7  # hex digit groups a shape can have (a UUID has 5), separated by one of - _ . :
HEX_LOWER, HEX_UPPER, OPAQUE = 1, 2, 0  # request_id_shapes.kind

# The prefix is a word (lowercase letters and separators, no digits: it is the same for every id of the
# shape, and digits would be data); the shortest one that leaves a hex body wins. A failover attempt's
# "@provider" suffix (core/failover.py) is part of the shape.
_WORD = r"([a-z_\-.:/]{0,24}?)"
_SUFFIX = r"(@[A-Za-z0-9_\-.]{1,40})?"
_HEX = {
    kind: re.compile(_WORD + rf"([0-9{d}]+(?:[-_.:][0-9{d}]+){{0,{GROUPS - 1}}})" + _SUFFIX)
    for kind, d in ((HEX_LOWER, "a-f"), (HEX_UPPER, "A-F"))
}
_OPAQUE = re.compile(r"([a-z]{1,16}[-_])([!-~]+)")  # "chatcmpl-" + anything printable
_GROUP_SPLIT = re.compile(r"([-_.:])")
# A capital no hex digit is: an id holding one fits no hex shape unless it is in an "@" suffix, so the two
# hex patterns (0.84 of shape_of's 1.43 µs for a "chatcmpl-" id) are not tried on it.
_NOT_HEX = re.compile(r"[G-Z]")

ShapeKey = tuple[Any, ...]  # (kind, prefix, suffix, group lengths, separators)


def shape_of(request_id: str) -> tuple[ShapeKey, bytes] | None:
    """The id's shape and its packed body, or None when it fits no shape (stored as its text)."""
    if not request_id.isascii() or not request_id.isprintable():
        return None
    best: tuple[ShapeKey, bytes] | None = None
    hex_shapes = _HEX.items() if "@" in request_id or _NOT_HEX.search(request_id) is None else ()
    for kind, pattern in hex_shapes:
        m = pattern.fullmatch(request_id)
        if m is None or (best is not None and len(best[0][1]) <= len(m.group(1))):
            continue
        parts = _GROUP_SPLIT.split(m.group(2))
        groups, seps = parts[0::2], parts[1::2]
        digits = "".join(groups)
        packed = bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
        best = ((kind, m.group(1), m.group(3) or "", tuple(map(len, groups)), tuple(seps)), packed)
    if best is not None:
        return best
    m = _OPAQUE.fullmatch(request_id)
    if m is not None:
        return (OPAQUE, m.group(1), "", (), ()), m.group(2).encode()
    return None


def _columns(key: ShapeKey) -> tuple[Any, ...]:
    """A shape as its request_id_shapes columns after tag: the view decodes with these alone."""
    kind, prefix, suffix, lengths, seps = key
    pad = sum(lengths) % 2  # an odd number of digits was packed behind a leading 0
    offsets, at = [], 1 + pad
    for n in lengths:
        offsets.append(at)
        at += n
    lengths = list(lengths) + [0] * (GROUPS - len(lengths))
    offsets += [0] * (GROUPS - len(offsets))
    seps = list(seps) + [""] * (GROUPS - 1 - len(seps))
    return (json.dumps(key), kind, prefix, suffix, *offsets, *lengths, *seps)


SHAPE_COLUMNS = (
    "shape",
    "kind",
    "prefix",
    "suffix",
    *(f"o{i}" for i in range(1, GROUPS + 1)),
    *(f"n{i}" for i in range(1, GROUPS + 1)),
    *(f"s{i}" for i in range(1, GROUPS)),
)
CREATE_SHAPES = f"""
    CREATE TABLE request_id_shapes (
        tag    BLOB PRIMARY KEY,    -- the first byte of a stored id
        shape  TEXT NOT NULL UNIQUE, -- JSON of the ShapeKey (llmpulse.core.usage.request_ids), for lookups
        kind   INTEGER NOT NULL,    -- 0: prefix + the body as it is; 1/2: hex digits, lower/upper case
        prefix TEXT NOT NULL,
        suffix TEXT NOT NULL,
        {", ".join(f"o{i} INTEGER NOT NULL" for i in range(1, GROUPS + 1))},  -- where group i starts in hex(body)
        {", ".join(f"n{i} INTEGER NOT NULL" for i in range(1, GROUPS + 1))},  -- its length (0: no such group)
        {", ".join(f"s{i} TEXT NOT NULL" for i in range(1, GROUPS))}           -- the separator after it
    ) WITHOUT ROWID;
"""


def decoded_sql(column: str) -> str:
    """SQL giving the request id's text back from its stored form in `column` (a BLOB or the text itself)."""
    body = " || ".join(
        f"substr(x.h, s.o{i}, s.n{i})" + (f" || s.s{i}" if i < GROUPS else "") for i in range(1, GROUPS + 1)
    )
    return (
        f"CASE WHEN typeof({column}) = 'blob' THEN (SELECT s.prefix || CASE s.kind "
        f"WHEN {OPAQUE} THEN CAST(substr({column}, 2) AS TEXT) WHEN {HEX_LOWER} THEN lower({body}) ELSE {body} END "
        f"|| s.suffix FROM request_id_shapes s, (SELECT hex(substr({column}, 2)) AS h) AS x "
        f"WHERE s.tag = substr({column}, 1, 1)) ELSE {column} END"
    )


_INSERT_SHAPE = (
    f"INSERT INTO request_id_shapes (tag, {', '.join(SHAPE_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' for _ in SHAPE_COLUMNS)})"
)


class ShapeTags:
    """The shapes a database holds (shape -> its tag byte), as one process knows them. Shapes are never
    changed or removed, so what was read once stays true; a miss is looked up (and added) inside the
    caller's write transaction, and remembered only once that transaction commits (`commit`)."""

    def __init__(self) -> None:
        self.tags: dict[ShapeKey, bytes] = {}
        self.full = False  # the table holds MAX_SHAPES shapes: it will never take another
        # Lowercase hex shapes as one regex each (its literal prefix, groups and separators): an id one of
        # these matches has that shape — shape_of would find no shorter prefix, the shape's prefix being
        # the shortest for the id it came from and the rest of the id not changing which is (the same
        # characters before the digits) — at a third of shape_of's cost. The first few shapes only.
        self.fast: list[tuple[re.Pattern[str], bytes, str]] = []

    def stored_forms(self, conn: sqlite3.Connection, request_ids: Iterable[str | None]) -> tuple[list[Any], Any]:
        """Each id as stored (None stays None), looking up and adding shapes on `conn` (inside its write
        transaction); and what to pass to commit() once that transaction committed."""
        added: dict[ShapeKey, bytes] = {}
        full = [self.full]  # this transaction's view (a rolled-back one must not make the table look full)
        out: list[Any] = []
        fast = list(self.fast)  # and the shapes this transaction adds, for the rest of its ids
        for rid in request_ids:
            if rid is None:
                out.append(None)
                continue
            form = _fast_form(rid, fast)
            if form is None:
                learned = len(added)
                form = self._stored_form(conn, rid, added, full)
                if len(added) > learned and len(fast) < _FAST_SHAPES:
                    key = next(reversed(added))
                    fast.extend(_fast_pattern(key, added[key]))
            out.append(form)
        return out, (added, full[0])

    def known_forms(self, request_ids: Iterable[str | None]) -> list[Any] | None:
        """Each id's stored form by the shapes already committed, without the database: a batch made
        ready off the connection's thread (an opaque id, "chatcmpl-...", takes 1.7 µs: no shortcut
        pattern serves it). None if an id's shape is not among those: stored_forms, inside the write
        transaction, then does them all (and adds the shape)."""
        fast = list(self.fast)  # commit() may add to it meanwhile, on the event loop's thread
        tags, full = self.tags, self.full
        if not tags and not full:
            return None
        ids = list(request_ids)
        if ids and None not in ids:  # a batch of one hex shape (UUIDs, "req-..."): as one array
            for key, shape_tag in list(tags.items()):
                if key[0] == HEX_LOWER and (alike := _all_of_shape(cast(list[str], ids), key, shape_tag)) is not None:
                    return alike
        out: list[Any] = []
        for rid in ids:
            form: Any = None if rid is None else _fast_form(rid, fast)
            if form is None and rid is not None:
                found = shape_of(rid)
                if found is None:  # no shape: its text
                    form = rid
                elif (tag := tags.get(found[0])) is not None:
                    form = tag + found[1]
                elif full:  # no room for its shape: its text, as stored_forms stores it
                    form = rid
                else:
                    return None
            out.append(form)
        return out

    def _stored_form(self, conn: sqlite3.Connection, rid: str, added: dict[ShapeKey, bytes], full: list[bool]) -> Any:
        found = shape_of(rid)
        if found is None:
            return rid
        key, packed = found
        tag = self.tags.get(key) or added.get(key)
        if tag is None and not full[0]:
            tag, full[0] = _tag_in_db(conn, key)
            if tag is not None:
                added[key] = tag
        return rid if tag is None else tag + packed

    def commit(self, learned: Any) -> None:
        added, full = learned
        for key, tag in added.items():
            self.tags[key] = tag
            if len(self.fast) < _FAST_SHAPES:
                self.fast.extend(_fast_pattern(key, tag))
        self.full = self.full or full


_FAST_SHAPES = 4  # ShapeTags.fast: an id that is none of these is tried against each of them first


def _fast_form(request_id: str, fast: Sequence[tuple[re.Pattern[str], bytes, str]]) -> bytes | None:
    """The id's stored form by the first of ShapeTags.fast's shapes it has, or None: it has none of them."""
    for pattern, tag, pad in fast:
        m = pattern.fullmatch(request_id)
        if m is not None:
            return tag + bytes.fromhex(pad + "".join(m.groups()))
    return None


def _all_of_shape(ids: list[str], key: ShapeKey, tag: bytes) -> list[Any] | None:
    """Each id's stored form (tag + its digits packed) when every one has this lowercase hex shape — the
    same ids _fast_pattern's regex takes, the same forms — worked out on the batch as one array of its
    characters: 0.1 µs an id instead of 0.5. None when one has not (or the batch is empty)."""
    import numpy as np

    _, prefix, suffix, lengths, seps = key
    width = len(prefix) + sum(lengths) + len(seps) + len(suffix)
    if not ids or set(map(len, ids)) != {width}:
        return None
    joined = "".join(ids)
    if not joined.isascii():
        return None
    chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(len(ids), width)
    template = prefix + "".join("0" * n + (seps[i] if i < len(seps) else "") for i, n in enumerate(lengths)) + suffix
    digits: list[int] = []  # where each digit stands in an id of this shape
    at = len(prefix)
    for i, n in enumerate(lengths):
        digits.extend(range(at, at + n))
        at += n + (len(seps[i]) if i < len(seps) else 0)
    literal = [i for i in range(width) if i not in set(digits)]
    expected = np.frombuffer(template.encode("ascii"), dtype=np.uint8)
    if literal and not (chars[:, literal] == expected[literal]).all():
        return None
    hexes = chars[:, digits]
    decimal = (hexes >= ord("0")) & (hexes <= ord("9"))
    if not (decimal | ((hexes >= ord("a")) & (hexes <= ord("f")))).all():
        return None
    nibbles = np.where(decimal, hexes - ord("0"), hexes - ord("a") + 10).astype(np.uint8)
    if len(digits) % 2:  # packed behind a 0, as bytes.fromhex("0" + digits)
        nibbles = np.concatenate((np.zeros((len(ids), 1), dtype=np.uint8), nibbles), axis=1)
    packed = np.empty((len(ids), 1 + nibbles.shape[1] // 2), dtype=np.uint8)
    packed[:, 0] = tag[0]
    packed[:, 1:] = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    # each row as one bytes object, in C (a void view keeps its zero bytes, which a bytes view would drop)
    forms: list[Any] = packed.view(f"V{packed.shape[1]}").ravel().tolist()
    return forms


def _fast_pattern(key: ShapeKey, tag: bytes) -> list[tuple[re.Pattern[str], bytes, str]]:
    """ShapeTags.fast's entry for a lowercase hex shape (none for another kind): its literal prefix,
    groups and separators as one regex, the tag, the "0" an odd number of digits is packed behind."""
    kind, prefix, suffix, lengths, seps = key
    if kind != HEX_LOWER:
        return []
    body = "".join(f"([0-9a-f]{{{n}}})" + (re.escape(seps[i]) if i < len(seps) else "") for i, n in enumerate(lengths))
    pattern = re.compile(re.escape(prefix) + body + re.escape(suffix))
    return [(pattern, tag, "0" * (sum(lengths) % 2))]


def _tag_in_db(conn: sqlite3.Connection, key: ShapeKey) -> tuple[bytes | None, bool]:
    """(the shape's tag, whether the table is full), adding the shape when there is room."""
    columns = _columns(key)
    row = conn.execute("SELECT tag FROM request_id_shapes WHERE shape = ?", (columns[0],)).fetchone()
    if row is not None:
        return bytes(row[0]), False
    (count,) = conn.execute("SELECT COUNT(*) FROM request_id_shapes").fetchone()
    if count >= MAX_SHAPES:
        return None, True
    tag = bytes((count + 1,))  # shapes are never removed: 1..count are taken
    conn.execute(_INSERT_SHAPE, (tag, *columns))
    return tag, False


_SHAPE_TAGS: weakref.WeakKeyDictionary[Any, ShapeTags] = weakref.WeakKeyDictionary()


def shape_tags(store: Any) -> ShapeTags:
    """The shapes known for an open Store (kept as long as it is)."""
    tags = _SHAPE_TAGS.get(store)
    if tags is None:
        tags = _SHAPE_TAGS[store] = ShapeTags()
    return tags


def encode_stored_ids(conn: sqlite3.Connection) -> None:
    """Migration 0199: every request id already stored as text goes to its stored form."""
    tags = ShapeTags()
    last = 0
    while True:
        rows: Sequence[tuple[int, str]] = conn.execute(
            "SELECT id, request_id FROM usage_calls WHERE id > ? AND request_id IS NOT NULL ORDER BY id LIMIT 5000",
            (last,),
        ).fetchall()
        if not rows:
            return
        stored, learned = tags.stored_forms(conn, [rid for _, rid in rows])
        tags.commit(learned)  # one transaction: what this migration added stays for its own later rows
        conn.executemany(
            "UPDATE usage_calls SET request_id = ? WHERE id = ?",
            [(form, call) for form, (call, rid) in zip(stored, rows, strict=True) if form is not rid],
        )
        last = rows[-1][0]
