"""Scored requests kept as they complete, so that an evaluation killed part way and run again
scores only what is missing.

One SQLite file per (model, settings key): the model's content identity and `Plan.settings_key`
name the file and are checked again inside it, so requests of other weights or other settings
are never read back. Each entry is keyed by the request itself (its kind and exact token ids and
arguments, hashed) and holds the raw result as the engine returned it (floats round-trip exactly
through JSON), so a restored result is the very number an uninterrupted run computes. The
backend writes a whole unit of requests per transaction (`evals.backend`): a kill loses at most
the unit in flight.
"""

import hashlib
import json
import sqlite3
import time
from pathlib import Path

# a store nobody touched for this long belongs to a stage that was never retried
MAX_AGE_S = 30 * 86400
_SUFFIX = ".sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (model_id TEXT NOT NULL, settings_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# SQLite's limit on the parameters of one statement is 32766; well below it
_BATCH = 500


class RequestStore:
    def __init__(self, path: Path, model_id: str, settings_key: str) -> None:
        self.path = Path(path)
        self.model_id = model_id
        self.settings_key = settings_key
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:
            # a file that is not a store of these requests (another model's or other settings',
            # reached by a collision of names, or no store at all) holds nothing worth keeping
            _unlink(self.path)
            self._db = self._connect()

    @classmethod
    def open(cls, folder: Path, model_id: str, settings_key: str) -> "RequestStore":
        """The store of this model and settings under `folder`, made if missing; stores there
        untouched for `MAX_AGE_S` are removed on the way."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - MAX_AGE_S
        for old in folder.glob(f"*{_SUFFIX}"):
            try:
                if old.stat().st_mtime < cutoff:
                    _unlink(old)
            except FileNotFoundError:  # another worker pruned it first
                pass
        name = hashlib.sha256(f"{model_id}\0{settings_key}".encode()).hexdigest()
        return cls(folder / f"{name}{_SUFFIX}", model_id, settings_key)

    def _connect(self) -> sqlite3.Connection:
        # autocommit off: `put` commits each unit in one transaction; the rollback journal with
        # synchronous=FULL makes a commit durable, and a kill mid-commit leaves the unit out
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT model_id, settings_key FROM meta").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES (?, ?)", (self.model_id, self.settings_key))
            db.commit()
        elif tuple(row) != (self.model_id, self.settings_key):
            db.close()
            raise sqlite3.DatabaseError(f"{self.path.name} holds the requests of another model or other settings")
        return db

    def get(self, kind: str, requests: list) -> dict:
        """{request: stored result} for those of `requests` (of one kind) in the store."""
        keys = {_key(kind, r): r for r in requests}
        found = {}
        listed = list(keys)
        for i in range(0, len(listed), _BATCH):
            batch = listed[i : i + _BATCH]
            rows = self._db.execute(
                f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(batch))})", batch
            ).fetchall()
            found.update((keys[key], json.loads(value)) for key, value in rows)
        return found

    def put(self, kind: str, results: dict) -> None:
        """Store {request: result} (JSON values) in one transaction."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?)",
                [(_key(kind, r), json.dumps(v)) for r, v in results.items()],
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def remove(self) -> None:
        """Delete the store: its evaluation's results are recorded."""
        self._db.close()
        _unlink(self.path)


def _key(kind: str, request) -> bytes:
    return hashlib.sha256(json.dumps([kind, request], separators=(",", ":")).encode()).digest()


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + "-journal").unlink(missing_ok=True)
