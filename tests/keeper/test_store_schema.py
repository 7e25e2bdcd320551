"""The keeper store's schema version: a file written by an older keeper opens migrated, with
its events; one written by a newer keeper is refused with what to do."""

import json
import sqlite3

import pytest

from offchain.errors import UserError
from offchain.keeper.store import SCHEMA_VERSION, StateStore

# version 0 as the keeper wrote it (user_version 0): account indexes partial on an event name
V0_SCHEMA = """
CREATE TABLE blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER NOT NULL);
CREATE TABLE events (block INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL, PRIMARY KEY (block, log_index));
CREATE INDEX events_account ON events (json_extract(args, '$.account')) WHERE name != 'AttestationPosted';
CREATE INDEX events_maker ON events (json_extract(args, '$.maker')) WHERE name != 'AttestationPosted';
CREATE INDEX events_taker ON events (json_extract(args, '$.taker')) WHERE name != 'AttestationPosted';
CREATE INDEX events_liquidator ON events (json_extract(args, '$.liquidator')) WHERE name != 'AttestationPosted';
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20
INDEXES = ("events_account", "events_maker", "events_taker", "events_liquidator")
KEYS = ["account", "maker", "taker", "liquidator"]


def _v0_file(path):
    db = sqlite3.connect(path)
    db.executescript(V0_SCHEMA)
    db.execute("INSERT INTO blocks VALUES (10, '0xa', 100), (11, '0xb', 101)")
    rows = [(10, 0, "engine", "Deposit", {"account": ALICE, "amount": 5}),
            (10, 1, "oracle", "RootPosted", {"epoch": 1}),
            (11, 0, "engine", "AttestationPosted", {"account": ALICE}),
            (11, 1, "engine", "Fill", {"maker": BOB, "taker": ALICE, "size_wad": 7})]
    db.executemany("INSERT INTO events VALUES (?, ?, '0x00', ?, ?, ?)",
                   [(b, i, c, n, json.dumps(a)) for b, i, c, n, a in rows])
    db.execute("INSERT INTO meta VALUES ('epoch', '3')")
    db.commit()
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def _indexes(path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
    finally:
        db.close()


def test_store__version_0_file__opens_migrated_with_its_rows(tmp_path):
    path = tmp_path / "keeper-old.sqlite"
    _v0_file(path)
    s = StateStore(path)
    assert s.processed_block() == 11 and s.block_hash(10) == "0xa" and s.get_meta("epoch") == "3"
    assert [(e.block, e.name) for e in s.events()] == [(10, "Deposit"), (10, "RootPosted"),
                                                      (11, "AttestationPosted"), (11, "Fill")]
    history = s.account_events(ALICE, ["Deposit", "Fill"], KEYS, 10)
    assert [(e.name, e.args.get("size_wad", e.args.get("amount"))) for e in history] == [("Fill", 7), ("Deposit", 5)]
    assert [e.name for e in s.account_events(BOB, ["Deposit", "Fill"], KEYS, 10)] == ["Fill"]
    s.close()
    indexes = _indexes(path)
    for name in INDEXES:
        assert "AttestationPosted" not in indexes[name]
        assert indexes[name].endswith(f"WHERE json_extract(args, '$.{name.removeprefix('events_')}') IS NOT NULL")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    db.close()
    again = StateStore(path)   # a migrated file opens as it is
    assert again.processed_block() == 11 and len(again.events()) == 4
    assert _indexes(path) == indexes


def test_account_events__migrated_store__searches_the_account_indexes(tmp_path):
    path = tmp_path / "keeper-old.sqlite"
    _v0_file(path)
    s = StateStore(path)
    sent: list[str] = []
    s._db.set_trace_callback(sent.append)
    s.account_events(ALICE, ["Deposit", "Fill"], KEYS, 10)
    s._db.set_trace_callback(None)
    (query,) = [q for q in sent if q.lstrip().upper().startswith("SELECT")]
    plan = " | ".join(row[3] for row in s._db.execute("EXPLAIN QUERY PLAN " + query))
    for name in INDEXES:
        assert f"USING INDEX {name}" in plan, plan


def test_store__new_file__current_version(tmp_path):
    StateStore(tmp_path / "k.sqlite").close()
    db = sqlite3.connect(tmp_path / "k.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_store__file_of_a_newer_keeper__refused_naming_versions(tmp_path):
    path = tmp_path / "k.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UserError, match=f"keeper store {path}: schema version {SCHEMA_VERSION + 1} is newer "
                                        f"than this keeper's {SCHEMA_VERSION}; run the newer keeper, or delete"):
        StateStore(path)
