"""What a tester found trying to break the phone channels (issue 17): each test names
one way residents' messages were lost or answered with an error, and pins the fix."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError

from tests.channels.conftest import replies_to


class _DownStore:
    """A rate-limit strategy whose storage (Redis) is down: every hit raises."""

    def hit(self, *args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6399.")


def test_an_sms_is_answered_when_the_rate_limit_store_is_down(app, send_sms, monkeypatch):
    from types import SimpleNamespace

    from channels import inbound

    monkeypatch.setitem(app.config, "RATELIMIT_ENABLED", True)
    monkeypatch.setattr(inbound, "limiter", SimpleNamespace(limiter=_DownStore()))
    answer = send_sms("BANTUAN", message_id="redis-down-1")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "queued"
    assert answer.json["replies"][0].startswith("Antri: PASAR <kecamatan>;")
    assert len(replies_to()) == 1
