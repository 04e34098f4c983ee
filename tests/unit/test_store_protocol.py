"""The SQL store implements every method of the Store protocol, with the same parameters."""

from __future__ import annotations

import inspect

from flowmail.store import Store
from flowmail.store.sql import SqlStore


def test_sql_store_implements_the_protocol() -> None:
    members = [name for name in vars(Store) if not name.startswith("_")]
    assert "claim" in members and "commit" in members
    for name in members:
        expected = inspect.signature(getattr(Store, name))
        actual = inspect.signature(getattr(SqlStore, name))
        assert list(actual.parameters) == list(expected.parameters), name
