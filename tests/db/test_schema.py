"""Where a database's schema stands for the migrations this code ships."""

from __future__ import annotations

from app.db.schema import SchemaRevisions, schema_revisions

REVISIONS = SchemaRevisions(heads=frozenset({"c3"}), known=frozenset({"a1", "b2", "c3"}))


def test_a_schema_at_the_heads_is_current() -> None:
    assert REVISIONS.compare(frozenset({"c3"})) == "current"


def test_a_schema_behind_or_not_migrated_is_pending() -> None:
    assert REVISIONS.compare(frozenset({"b2"})) == "pending"
    assert REVISIONS.compare(frozenset()) == "pending"


def test_a_schema_at_revisions_this_code_does_not_know_is_ahead() -> None:
    assert REVISIONS.compare(frozenset({"d4"})) == "ahead"


def test_a_schema_mixing_known_and_unknown_heads_is_pending() -> None:
    assert REVISIONS.compare(frozenset({"b2", "d4"})) == "pending"


def test_with_no_migrations_at_hand_nothing_is_ahead() -> None:
    assert SchemaRevisions(frozenset(), frozenset()).compare(frozenset({"d4"})) == "pending"


def test_the_shipped_migrations_heads_are_among_their_revisions() -> None:
    shipped = schema_revisions()
    assert shipped.heads and shipped.heads <= shipped.known
    assert shipped.compare(shipped.heads) == "current"
