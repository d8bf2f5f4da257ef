"""Django's Redis cache, keeping one `redis.Redis` per connection pool.

Django's client builds a new `redis.Redis` for every cache call, and redis-py's constructor sets up a
client of its own (response callbacks, retry policy): about 0.2 ms, on every session read of every
request, including the job card that each open browser tab polls every second. The pools, and so the
connections, were already shared; now the clients that wrap them are too. A `redis.Redis` is safe to
share between threads, and Django's cache handler gives each thread its own backend anyway.
"""

from django.core.cache.backends import redis as django_redis


class ReusingRedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
