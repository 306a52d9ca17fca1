"""deploy/redisnode.py: a sentinel-mode data node starts in the role the sentinels' files name,
and a node that crashed stays down long enough to be failed over."""

from __future__ import annotations

import time
from pathlib import Path

from eventgate.deploy.redisnode import hold_after_crash, node_command, sentinel_primary

REDIS = ["/usr/bin/redis-server", "--port", "7001", "--save", "", "--pidfile"]


def sentinel_file(path: Path, primary: int, epoch: int | None = None) -> Path:
    """A sentinel config as a sentinel rewrites it (quoted paths, epochs after a failover)."""
    lines = ["port 7003", 'dir "/var/x"', f"sentinel monitor eventgate 127.0.0.1 {primary} 2",
             "sentinel down-after-milliseconds eventgate 2000"]
    if epoch is not None:
        lines += [f"sentinel config-epoch eventgate {epoch}", "sentinel current-epoch 4",
                  "sentinel known-replica eventgate 127.0.0.1 7000"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_latest_epoch_names_the_primary(tmp_path):
    confs = [sentinel_file(tmp_path / "a", 7000), sentinel_file(tmp_path / "b", 7001, epoch=1),
             sentinel_file(tmp_path / "c", 7002, epoch=2)]
    assert sentinel_primary(confs) == 7002


def test_among_equal_epochs_the_most_named_wins(tmp_path):
    confs = [sentinel_file(tmp_path / "a", 7000, epoch=1), sentinel_file(tmp_path / "b", 7001,
                                                                          epoch=1),
             sentinel_file(tmp_path / "c", 7001, epoch=1)]
    assert sentinel_primary(confs) == 7001


def test_missing_or_unreadable_files_name_no_primary(tmp_path):
    (tmp_path / "garbage").write_text("sentinel monitor eventgate\n\nport x\n")
    assert sentinel_primary([tmp_path / "missing", tmp_path / "garbage"]) is None
    assert sentinel_primary([tmp_path / "missing", sentinel_file(tmp_path / "a", 7000)]) == 7000


def test_a_node_starts_as_a_replica_unless_it_is_the_primary():
    assert node_command(REDIS, 7000)[-3:] == ["--replicaof", "127.0.0.1", "7000"]
    assert node_command(REDIS, 7001) == REDIS
    assert node_command(REDIS, None) == REDIS  # nothing known: as rendered


def test_a_crashed_node_is_held_down_and_a_clean_stop_is_not(tmp_path):
    pidfile = tmp_path / "redis-1.pid"
    argv = [*REDIS, str(pidfile)]
    started = time.monotonic()
    hold_after_crash(argv, 0.3)  # no pid file: the last run shut down cleanly
    assert time.monotonic() - started < 0.2

    pidfile.write_text("12345\n")  # left behind: the last run was killed
    started = time.monotonic()
    hold_after_crash(argv, 0.3)
    assert time.monotonic() - started >= 0.3
    assert not pidfile.exists()
