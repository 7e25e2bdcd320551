"""The keeper's state store: sqlite in the data dir, every row keyed by block number.

A reorg rewinds by deleting everything above the fork block; a restart resumes from the
last processed block. Events are stored as decoded JSON so the book can be rebuilt without
re-reading the chain. The schema's version is sqlite's `user_version`; opening a store of an
older version migrates it in place (MIGRATIONS), one of a newer version is refused.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from offchain.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
);
-- the events naming an account, for per-account history (the API): expression indexes on
-- the argument names that hold an engine account, partial so that the events without that
-- argument (prices, roots: most rows) are left out; `json_extract(...) = ?` implies the
-- index's condition, so SQLite uses them for account_events as written
CREATE INDEX IF NOT EXISTS events_account ON events (json_extract(args, '$.account'))
    WHERE json_extract(args, '$.account') IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_maker ON events (json_extract(args, '$.maker'))
    WHERE json_extract(args, '$.maker') IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_taker ON events (json_extract(args, '$.taker'))
    WHERE json_extract(args, '$.taker') IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_liquidator ON events (json_extract(args, '$.liquidator'))
    WHERE json_extract(args, '$.liquidator') IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# version -> the statements that bring a store of version - 1 to it (SCHEMA then creates
# whatever is missing). Version 1: the account indexes of version 0 were partial on
# `name != 'AttestationPosted'`, an event the engine no longer has; CREATE INDEX IF NOT
# EXISTS would keep them, so they are dropped and SCHEMA recreates them.
MIGRATIONS = {
    1: """
DROP INDEX IF EXISTS events_account;
DROP INDEX IF EXISTS events_maker;
DROP INDEX IF EXISTS events_taker;
DROP INDEX IF EXISTS events_liquidator;
""",
}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True)
class StoredEvent:
    block: int
    log_index: int
    tx_hash: str
    contract: str
    name: str
    args: dict


class StateStore:
    """One sqlite file per keeper deployment (`<data_dir>/keeper-<chain>-<engine>.sqlite`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # the keeper loop may run in a worker thread; it is the only user of this connection
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION in one transaction (a crash leaves the old version)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise UserError(f"keeper store {self.path}: schema version {version} is newer than this "
                            f"keeper's {SCHEMA_VERSION}; run the newer keeper, or delete the file to "
                            "re-index from start_block")
        if version == SCHEMA_VERSION:
            return
        steps = "".join(MIGRATIONS[v] for v in range(version + 1, SCHEMA_VERSION + 1))
        self._db.executescript(f"BEGIN;{steps}{SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")

    def close(self) -> None:
        self._db.close()

    # ---- cursor ----
    def processed_block(self) -> int | None:
        row = self._db.execute("SELECT MAX(number) FROM blocks").fetchone()
        return row[0]

    def block_hash(self, number: int) -> str | None:
        row = self._db.execute("SELECT hash FROM blocks WHERE number = ?", (number,)).fetchone()
        return row[0] if row else None

    def recent_blocks(self, depth: int) -> list[tuple[int, str]]:
        """The last `depth` processed blocks, newest first, for reorg detection."""
        rows = self._db.execute(
            "SELECT number, hash FROM blocks ORDER BY number DESC LIMIT ?", (depth,)
        ).fetchall()
        return [(int(n), h) for n, h in rows]

    def block_timestamp(self, number: int) -> int | None:
        row = self._db.execute("SELECT timestamp FROM blocks WHERE number = ?", (number,)).fetchone()
        return row[0] if row else None

    # ---- writes: one transaction per block range so a crash never half-records a block ----
    def record(self, blocks: list[tuple[int, str, int]], events: list[StoredEvent]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO blocks (number, hash, timestamp) VALUES (?, ?, ?)", blocks
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [(e.block, e.log_index, e.tx_hash, e.contract, e.name, json.dumps(e.args))
                 for e in events],
            )

    def rewind(self, to_block: int) -> int:
        """Forget every block and event above `to_block`; returns how many events were dropped."""
        with self._db:
            self._db.execute("BEGIN")
            dropped = self._db.execute("DELETE FROM events WHERE block > ?", (to_block,)).rowcount
            self._db.execute("DELETE FROM blocks WHERE number > ?", (to_block,))
        return dropped

    def prune_blocks(self, keep_above: int) -> None:
        """Block hashes below the reorg window are only needed for the cursor: keep one."""
        self._db.execute(
            "DELETE FROM blocks WHERE number < ? AND number < (SELECT MAX(number) FROM blocks)",
            (keep_above,),
        )

    # ---- reads ----
    def events(self, from_block: int = 0, to_block: int | None = None) -> list[StoredEvent]:
        hi = to_block if to_block is not None else 2**62
        rows = self._db.execute(
            "SELECT block, log_index, tx_hash, contract, name, args FROM events "
            "WHERE block >= ? AND block <= ? ORDER BY block, log_index",
            (from_block, hi),
        ).fetchall()
        return [StoredEvent(b, i, t, c, n, json.loads(a)) for b, i, t, c, n, a in rows]

    def account_events(self, address: str, names: list[str], arg_keys: list[str],
                       limit: int) -> list[StoredEvent]:
        """Engine events naming `address` in any of `arg_keys`, newest first (for the API's history)."""
        match = " OR ".join(f"json_extract(args, '$.{k}') = ?" for k in arg_keys)
        rows = self._db.execute(
            "SELECT block, log_index, tx_hash, contract, name, args FROM events "  # noqa: S608
            f"WHERE contract = 'engine' AND name IN ({','.join('?' * len(names))}) AND ({match}) "
            "ORDER BY block DESC, log_index DESC LIMIT ?",
            [*names, *[address] * len(arg_keys), limit]).fetchall()
        return [StoredEvent(b, i, t, c, n, json.loads(a)) for b, i, t, c, n, a in rows]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
