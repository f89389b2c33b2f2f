import redis


def test_private_redis_server_answers_on_its_own_port(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    assert not redis_url.endswith(":6379/0")
