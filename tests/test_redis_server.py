"""The private Redis of `./bb run` and `./bb test`: AOF on, and ./bb run's data kept between runs."""

import os

import pytest
import redis

from buildboard.lib import redis_server
from jobs import ingest


@pytest.fixture
def no_redis_url(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)


def test_bb_runs_redis_keeps_accepted_data_across_a_restart(tmp_path, no_redis_url):
    first = redis_server.ensure_redis(tmp_path / "redis")
    try:
        client = redis.Redis.from_url(first.url)
        assert ingest.persistence_problem(client) is None
        client.rpush("bb:logbuf:1", b"1\n{}")
    finally:
        first.stop()
    assert os.listdir(tmp_path / "redis"), "the data directory is kept"
    second = redis_server.ensure_redis(tmp_path / "redis")
    try:
        assert redis.Redis.from_url(second.url).lrange("bb:logbuf:1", 0, -1) == [b"1\n{}"]
    finally:
        second.stop()


def test_bb_tests_redis_persists_too_and_cleans_up(no_redis_url):
    handle = redis_server.ensure_redis()
    try:
        assert ingest.persistence_problem(redis.Redis.from_url(handle.url)) is None
    finally:
        handle.stop()
    assert not os.path.exists(handle.workdir)
