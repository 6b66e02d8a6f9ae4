"""``common.db.compact_sql`` and the long one-statement paths it keeps fast."""

from __future__ import annotations

import pytest
from psycopg import _queries as psycopg_queries
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from ballots.entering import _ENTER_ON_POSTGRESQL
from common.db import PSYCOPG_CACHED_QUERY_LENGTH, compact_sql
from slots.booking import _BOOK_ON_POSTGRESQL
from slots.stock import _RESERVE_OR_TELL


def test_compact_sql_folds_whitespace_and_keeps_literals():
    sql = "SELECT  a,\n\t b\n    FROM t WHERE c = 'two  spaces\n' AND d = 'it''s'  \n"
    assert compact_sql(sql) == "SELECT a, b FROM t WHERE c = 'two  spaces\n' AND d = 'it''s'"
    # What it cannot read the bounds of, it refuses rather than fold inside a literal.
    for sql in (
        "SELECT 1 -- why\nFROM t",
        "SELECT /* it's */ 'a  b'",
        "SELECT E'a\\'b   c'",
        'SELECT "a  b" FROM t',
        "SELECT $$a  b$$",
    ):
        with pytest.raises(ValueError, match="cannot fold"):
            compact_sql(sql)


def test_psycopg_still_caches_up_to_our_length():
    """If psycopg changes how long a query it keeps converted, this says so."""
    assert psycopg_queries.MAX_CACHED_STATEMENT_LENGTH == PSYCOPG_CACHED_QUERY_LENGTH


@pytest.mark.parametrize(
    "statement",
    [_ENTER_ON_POSTGRESQL, _BOOK_ON_POSTGRESQL, _RESERVE_OR_TELL],
    ids=["entry", "booking", "stock"],
)
def test_rush_statements_fit_psycopg_cache(statement):
    """The statements of a booking and an entry, as sent to psycopg, are short enough to
    be converted once per process, not on every execution (150 us each)."""
    sent = str(statement.compile(dialect=psycopg_dialect.dialect()))
    assert "%(" in sent  # the form psycopg converts
    assert len(sent) <= PSYCOPG_CACHED_QUERY_LENGTH
    assert len(statement.compile(dialect=psycopg_dialect.dialect()).params) <= (
        psycopg_queries.MAX_CACHED_STATEMENT_PARAMS
    )
