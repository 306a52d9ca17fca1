"""max_request_bytes(config): the largest request body eventgate accepts, for the app and nginx.

Both must use the same number. nginx refusing first is what makes a 413 reliable: a body the app
refuses unread makes gunicorn close the connection while nginx is still sending it, and nginx
then answers 502 (our 503 ``unavailable``) instead of the app's 413.
"""

from __future__ import annotations

from eventgate.shared.config import Config

#: Request bodies above this are refused with 413 whatever the batch settings allow.
MAX_REQUEST_BYTES_CAP = 4 * 1024 * 1024
# Room for the JSON around one event's data (channel, type, field names, escapes).
_EVENT_OVERHEAD_BYTES = 1024


def max_request_bytes(config: Config) -> int:
    """The largest request body accepted: a full batch of full-size events, capped at
    ``MAX_REQUEST_BYTES_CAP`` — but always enough for one full-size event, even escaped."""
    batch = config.max_batch_events * (config.max_event_bytes + _EVENT_OVERHEAD_BYTES)
    one_event = 2 * config.max_event_bytes + _EVENT_OVERHEAD_BYTES
    return max(min(batch, MAX_REQUEST_BYTES_CAP), one_event)
