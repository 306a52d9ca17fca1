"""The key scheme: a channel's log and live channel share its partition's hash tag, and every
log key, of this form or eventgate 0.2's, names its channel back."""

from __future__ import annotations

import zlib

from eventgate.shared import keys


def test_a_channels_log_and_live_channel_share_its_partitions_tag():
    for channel in ("orders.42", "users.7", "a", "x:y-z_1"):
        tag = keys.partition_tag(keys.partition(channel))
        assert keys.log_key(channel).startswith(f"eventgate:{tag}:")
        assert keys.live_channel(channel).startswith(f"eventgate:{tag}:")
        assert keys.channel_of_live(keys.live_channel(channel)) == channel
        assert keys.channel_of_log(keys.log_key(channel)) == channel
    assert keys.partition("orders.42") == zlib.crc32(b"orders.42") % keys.PARTITIONS


def test_channels_spread_over_every_partition():
    seen = {keys.partition(f"orders.{n}") for n in range(5000)}
    assert seen == set(range(keys.PARTITIONS))


def test_log_keys_of_other_forms_name_their_channel():
    assert keys.channel_of_log("eventgate:{orders.42}:log") == "orders.42"  # eventgate 0.2
    assert keys.channel_of_log("eventgate:{p999}:orders.42:log") == "orders.42"  # other count
    for other in ("eventgate:{px}:a:log", "eventgate:workers", "eventgate:{a:live",
                  "other:{p1}:a:log", "eventgate:{p1}x:log"):
        assert keys.channel_of_log(other) is None, other
    assert keys.is_live(keys.live_channel("a")) and not keys.is_live("eventgate:worker")
