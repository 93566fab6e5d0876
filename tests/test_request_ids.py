"""Request ids stored by shape (core/usage/request_ids.py): every id reads back byte for byte through the
usage_records view (plain SQL), the same id is stored the same way by any process at any time, so
deduplication stays exact, and a full shapes table only means text storage, never a lost or doubled id."""

from __future__ import annotations

import random
import sqlite3
import string
import uuid

from llmpulse.core.store import Store
from llmpulse.core.usage import request_ids
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.request_ids import ShapeTags

T0 = 1_795_000_000.0
B62 = string.digits + string.ascii_letters


def varied_ids(rng: random.Random, n: int) -> list[str]:
    """Ids of realistic shapes and of random ones built from the characters the shapes are made of."""

    def hx(k: int, alphabet: str = "0123456789abcdef") -> str:
        return "".join(rng.choice(alphabet) for _ in range(k))

    makers = [
        lambda: f"req-{rng.randrange(10**8):08d}-{rng.getrandbits(32):08x}",
        lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        lambda: str(uuid.UUID(int=rng.getrandbits(128))).upper(),
        lambda: "chatcmpl-" + "".join(rng.choice(B62) for _ in range(29)),
        lambda: "req_" + hx(32),
        lambda: hx(32) + hx(16),  # an OTLP trace id + span id
        lambda: f"{uuid.UUID(int=rng.getrandbits(128))}@{rng.choice(['groq', 'openai', 'together-ai'])}",
        lambda: hx(rng.randint(1, 9), "0123456789"),  # digits only, leading zeros kept
        lambda: hx(rng.randint(1, 6), "0123456789ABCDEF"),
        # random mixes of hex, word letters and separators: prefixes, odd lengths, many groups
        lambda: (
            "".join(
                rng.choice(["", "req", "a", "ab-", "x_", "run:"])
                + rng.choice(["", "-", "_", ".", ":", "/", "@", " "])
                + hx(rng.randint(1, 5), rng.choice(["0123456789abcdef", "0123456789ABCDEF", "0123456789", "ghz"]))
                for _ in range(rng.randint(1, 9))
            ).strip()
            or "0"
        ),
        lambda: "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(1, 40))),
        lambda: "запрос-" + hx(6),
    ]
    return [makers[i % len(makers)]() for i in range(n)]


async def _store(store: Store, ids: list[str], batch_size: int) -> int:
    async with Recorder(store, Pricing(), batch_size=batch_size) as rec:
        for i, rid in enumerate(ids):
            rec.record(provider="openai", model="gpt-4o", ts=T0 + i, input_tokens=1, request_id=rid)
    return rec.stored


async def test_every_id_reads_back_exactly_and_is_stored_once(tmp_path):
    rng = random.Random(14)
    ids = list(dict.fromkeys(varied_ids(rng, 3000)))  # distinct, in order
    db = tmp_path / "ids.db"
    store = await Store.open(db)
    try:
        assert await _store(store, ids, batch_size=200) == len(ids)  # later batches take the fast path
        rows = await store.fetchall("SELECT request_id FROM usage_records ORDER BY id")
        assert [r[0] for r in rows] == ids
        kinds = dict(await store.fetchall("SELECT typeof(request_id), COUNT(*) FROM usage_calls GROUP BY 1"))
        assert kinds["blob"] > len(ids) / 2 and kinds["text"] > 0
    finally:
        await store.close()
    # Another process (nothing remembered), in a different order and batching: every id is a duplicate.
    store = await Store.open(db)
    try:
        shuffled = ids[::-1]
        assert await _store(store, shuffled, batch_size=333) == 0
        (count,) = await store.fetchone("SELECT COUNT(*) FROM usage_calls")
        assert count == len(ids)
    finally:
        await store.close()


def test_the_fast_path_stores_what_the_careful_one_does(tmp_path):
    """Once shapes are known, ids matching one take a shortcut (one regex of that shape); the stored form
    must be the one shape_of gives, or the same id could be stored two ways."""
    rng = random.Random(3)
    ids = varied_ids(rng, 4000)
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.executescript(request_ids.CREATE_SHAPES)
    learner = ShapeTags()
    conn.execute("BEGIN")
    _, learned = learner.stored_forms(conn, ids[:500])
    conn.execute("COMMIT")
    learner.commit(learned)
    assert learner.fast  # some lowercase hex shapes were learned
    careful = ShapeTags()
    careful.tags = dict(learner.tags)  # the same knowledge, no shortcut
    conn.execute("BEGIN")
    fast_forms, _ = learner.stored_forms(conn, ids)
    careful_forms, _ = careful.stored_forms(conn, ids)
    conn.execute("ROLLBACK")
    assert fast_forms == careful_forms


def test_forms_made_ready_without_the_database_are_the_stored_ones(tmp_path):
    """The import works out a batch's stored ids off the connection's thread (ShapeTags.known_forms), by
    the shapes already committed: each form is the one stored_forms gives, and a batch holding an id of
    another shape (or of none) is left to stored_forms whole."""
    rng = random.Random(5)
    ids = [f"req-{i:08d}-{rng.getrandbits(32):08x}" for i in range(2000)]
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.executescript(request_ids.CREATE_SHAPES)
    learner = ShapeTags()
    assert learner.known_forms(ids[:10]) is None  # no shape known yet
    conn.execute("BEGIN")
    _, learned = learner.stored_forms(conn, ids[:10])
    conn.execute("COMMIT")
    learner.commit(learned)
    with_gaps = [*ids[10:], None, ids[20]]
    ready = learner.known_forms(with_gaps)
    conn.execute("BEGIN")
    stored, _ = ShapeTags().stored_forms(conn, with_gaps)
    conn.execute("ROLLBACK")
    assert ready == stored and ready[-2] is None
    opaque = ["chatcmpl-AbC123xyz", "no shape at all ✓"]  # a shape not known yet, and none
    assert learner.known_forms([*ids[10:20], *opaque]) is None  # looked up in SQLite, in the transaction
    conn.execute("BEGIN")
    _, learned = learner.stored_forms(conn, opaque)
    conn.execute("COMMIT")
    learner.commit(learned)
    mixed = [*opaque, "chatcmpl-Zz9", ids[30], None, "x" * 300]
    conn.execute("BEGIN")
    stored, _ = ShapeTags().stored_forms(conn, mixed)
    conn.execute("ROLLBACK")
    assert learner.known_forms(mixed) == stored
    assert stored[0][0] == stored[2][0] and stored[1] == opaque[1]  # one opaque shape; text for no shape


def test_a_batch_of_one_shape_is_stored_as_shape_of_stores_each_id(tmp_path):
    """A shape learned in the middle of a batch is a shortcut (ShapeTags.fast) for the rest of it, before
    its transaction commits: every id must still get exactly the form shape_of gives it."""
    rng = random.Random(9)
    ids = [f"req-{i:08d}-{rng.getrandbits(32):08x}" for i in range(3000)]
    odd = [f"call_{rng.getrandbits(36):09x}" for _ in range(50)]  # an odd number of digits: packed behind a 0
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.executescript(request_ids.CREATE_SHAPES)
    expected = {}
    for rid in ids + odd:
        key, packed = request_ids.shape_of(rid)
        expected[rid] = (key, packed)
    learner = ShapeTags()
    conn.execute("BEGIN")
    first, learned = learner.stored_forms(conn, ids[:1000] + odd)  # nothing known yet: learned on the way
    conn.execute("COMMIT")
    learner.commit(learned)
    tags = dict(learner.tags)
    assert len(tags) == 2
    assert first == [tags[expected[r][0]] + expected[r][1] for r in ids[:1000] + odd]
    conn.execute("BEGIN")
    for batch in (ids[1000:], odd):  # once committed: the shortcut of each shape
        forms, _ = learner.stored_forms(conn, batch)
        assert forms == [tags[expected[r][0]] + expected[r][1] for r in batch]
    conn.execute("ROLLBACK")


async def test_a_full_shapes_table_stores_new_shapes_as_text(tmp_path, monkeypatch):
    monkeypatch.setattr(request_ids, "MAX_SHAPES", 2)
    ids = ["req-0001", "req-0002", "job-1", "a1b2c3d4-ee", "job-2", "zz_9", "req-0003", "a1b2c3d4-ff"]
    db = tmp_path / "full.db"
    store = await Store.open(db)
    try:
        assert await _store(store, ids, batch_size=3) == len(ids)
        rows = await store.fetchall(
            "SELECT r.request_id, typeof(c.request_id) FROM usage_records r JOIN usage_calls c USING (id) ORDER BY id"
        )
        assert [r[0] for r in rows] == ids
        # the first two shapes (req-NNNN and job-N) are stored by shape, the rest as their text
        assert [r[1] for r in rows] == ["blob", "blob", "blob", "text", "blob", "text", "blob", "text"]
    finally:
        await store.close()
    store = await Store.open(db)
    try:
        assert await _store(store, ids + ["zz_10", "req-0004"], batch_size=4) == 2
        rows = await store.fetchall("SELECT request_id FROM usage_records ORDER BY id")
        assert [r[0] for r in rows] == [*ids, "zz_10", "req-0004"]
    finally:
        await store.close()


def test_an_id_with_a_capital_no_hex_digit_is_fits_no_hex_shape():
    """shape_of skips the hex patterns for an id holding one of G-Z outside an "@" suffix: no hex shape
    can take it. Checked against the patterns themselves on ids made to come close."""
    rng = random.Random(21)
    alphabet = "abcdefGHIJZxyz0189ABCF-_.:/"
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(20_000)]
    ids += ["chatcmpl-AbC123xyz", "req-0123ABCDEF-G", "msg_01XyZ", "x-DEADBEEF", "Gab", "ab-12G"]
    skipped = [rid for rid in ids if "@" not in rid and request_ids._NOT_HEX.search(rid)]
    assert len(skipped) > 10_000
    for rid in skipped:
        assert all(pattern.fullmatch(rid) is None for pattern in request_ids._HEX.values()), rid
    assert request_ids.shape_of("x-DEADBEEF")[0][0] == request_ids.HEX_UPPER  # no G-Z: still tried
    assert request_ids.shape_of("chatcmpl-AbC123xyz")[0][0] == request_ids.OPAQUE


def test_a_batch_of_one_hex_shape_worked_out_as_an_array_is_stored_as_each_id_alone(tmp_path):
    """known_forms packs a batch whose ids all have one lowercase hex shape as one array of characters:
    each form must be the one the shape's regex gives that id alone (stored_forms), for shapes of every
    cut — UUIDs, an odd number of digits, a suffix — and a batch with one id off the shape (a capital,
    a character short, another separator) goes id by id and is still right."""
    rng = random.Random(12)

    def hexes(n: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    shapes = {
        "uuid": [f"{hexes(8)}-{hexes(4)}-{hexes(4)}-{hexes(4)}-{hexes(12)}" for _ in range(3000)],
        "odd": [f"call_{hexes(9)}" for _ in range(3000)],
        "suffix": [f"req-{hexes(8)}.{hexes(6)}@openai" for _ in range(3000)],
    }
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.executescript(request_ids.CREATE_SHAPES)
    learner = ShapeTags()
    conn.execute("BEGIN")
    _, learned = learner.stored_forms(conn, [ids[0] for ids in shapes.values()])
    conn.execute("COMMIT")
    learner.commit(learned)
    assert {key[0] for key in learner.tags} == {request_ids.HEX_LOWER}
    left_to_sqlite = 0
    for name, ids in shapes.items():
        one_by_one = [request_ids.shape_of(rid) for rid in ids]
        expected = [learner.tags[key] + packed for key, packed in one_by_one]  # type: ignore[misc]
        assert request_ids._all_of_shape(ids, one_by_one[0][0], learner.tags[one_by_one[0][0]]) == expected, name
        assert learner.known_forms(ids) == expected, name
        other = next(other_ids[0] for other_name, other_ids in shapes.items() if other_name != name)
        for odd in (ids[5].upper(), ids[5][:-1], ids[5].replace("-", ":", 1).replace("_", ":", 1), other):
            batch = [*ids[:10], odd]
            assert request_ids._all_of_shape(batch, one_by_one[0][0], learner.tags[one_by_one[0][0]]) is None
            conn.execute("BEGIN")
            stored, _ = ShapeTags().stored_forms(conn, batch)
            conn.execute("ROLLBACK")
            # id by id: a shape not committed yet leaves the batch to stored_forms; else the same forms
            got = learner.known_forms(batch)
            assert got == stored if odd is other else got in (None, stored), (name, odd)
            left_to_sqlite += got is None
    assert left_to_sqlite  # the capital UUID: a shape not committed yet
