"""A Redis that refuses writes: filling a redis-server started with a small ``maxmemory`` and
``noeviction`` (the policy the stack runs Redis with) until it answers OOM."""

from __future__ import annotations

import itertools

import redis

#: The settings of a small Redis that fills quickly: a few MiB over an empty server's ~1 MiB.
SMALL_REDIS = ("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")


def fill_up(client: redis.Redis) -> int:
    """Write 10 KiB values until Redis refuses one for want of memory; returns how many it
    took. Raises AssertionError if it never refuses (no maxmemory set)."""
    for count in itertools.count():
        try:
            client.set(f"filler:{count}", b"x" * 10240)
        except redis.exceptions.OutOfMemoryError:
            return count
        if count > 100_000:
            raise AssertionError("Redis took 1 GiB without refusing: is maxmemory set?")
    raise AssertionError("unreachable")
