"""Issue 14 item 6b: the app reads one clock, which tests start at a fixed instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common import timeutil
from config import ConfigError, load_config


def test_the_test_clock_parses_and_ticks_from_its_start():
    instant, anchor = timeutil.parse_test_clock("2026-12-03T23:50:00+07:00@1000.5")
    assert (instant, anchor) == (datetime(2026, 12, 3, 16, 50, tzinfo=UTC), 1000.5)
    assert timeutil.parse_test_clock("2026-12-04T00:30:00+07:00")[1] is None
    with pytest.raises(ValueError):
        timeutil.parse_test_clock("2026-12-03T23:50:00")  # naive: which zone?
    saved = timeutil._offset
    try:
        timeutil.start_clock(datetime(2026, 12, 4, 0, 30, tzinfo=timeutil.zone("Asia/Jakarta")))
        first = timeutil.utcnow()
        assert (
            timedelta(0) <= first - datetime(2026, 12, 3, 17, 30, tzinfo=UTC) < timedelta(seconds=5)
        )
        assert timeutil.utcnow() >= first  # it ticks forward
    finally:
        timeutil._offset = saved


def test_production_refuses_a_test_clock(tmp_path):
    env = {"ANTRI_ENV": "production", "SECRET_KEY": "s" * 32, "NIK_HASH_KEY": "n" * 32}
    assert load_config(tmp_path, env)["ANTRI_TEST_CLOCK"] == ""
    with pytest.raises(ConfigError, match="ANTRI_TEST_CLOCK"):
        load_config(tmp_path, {**env, "ANTRI_TEST_CLOCK": "2026-12-03T23:50:00+07:00"})
    with pytest.raises(ConfigError, match="ANTRI_TEST_CLOCK"):
        load_config(tmp_path, {"ANTRI_TEST_CLOCK": "tomorrow"})
