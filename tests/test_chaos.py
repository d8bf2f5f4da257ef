"""A short `make chaos`: jobs over HTTP to gunicorn, two worker processes, and a SIGKILL, a SIGTERM and a
Redis restart while they run (no Postgres restart: that needs the private cluster `make chaos` builds)."""

import pytest
from django.db import connection

from devtools import chaoskit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def private_redis(tmp_path):
    redis = chaoskit.PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


def test_forty_jobs_survive_a_sigkill_a_sigterm_and_a_redis_restart(tmp_path, private_redis, seeded_prices):
    db = connection.settings_dict
    chaos = chaoskit.Chaos(
        folder=tmp_path,
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        redis=private_redis,
        postgres=None,
        project_id=chaoskit.ensure_user_and_project(username="chaos"),
        username="chaos",
        jobs=40,
        kills=["sigkill", "redis", "sigterm"],
        concurrency=6,
        latency=0.8,
        jitter=0.4,
        fault_every=1.5,
        timeout=75,
    )
    report = chaos.run()
    print("\n" + report.table())

    assert report.violations == []
    assert report.kills == {"sigkill": 1, "redis": 1, "sigterm": 1}
    assert report.jobs == report.submitted == 40
    assert report.succeeded + report.failed == 40
    assert report.ledger_entries <= report.api_calls
    assert report.faults > 0
