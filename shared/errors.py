"""One root error for eventgate; subclasses carry the data a caller needs to answer well."""

from __future__ import annotations


class EventgateError(Exception):
    """Root of every error eventgate raises on purpose.

    ``code`` is the machine-readable name used in JSON error bodies; ``str(error)`` is a human
    sentence that never contains a secret.
    """

    code = "error"
    #: The HTTP status an API answers with when this error refuses a request.
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(EventgateError):
    code = "config_error"
    status = 500


class InvalidName(EventgateError, ValueError):
    """A channel name or event type outside the contract's alphabet or length."""

    code = "invalid_name"
    status = 400

    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.value = value


class InvalidEvent(EventgateError, ValueError):
    code = "invalid_event"
    status = 400


class TokenError(EventgateError):
    """The token is missing, malformed, tampered with, or signed by an unknown key."""

    code = "invalid_token"
    status = 401


class TokenExpired(TokenError):
    code = "token_expired"

    def __init__(self, message: str, expired_at: float | None) -> None:
        super().__init__(message)
        self.expired_at = expired_at


class TokenRevoked(TokenError):
    """The token's subject was revoked (``POST /api/revocations``) at or after the second the
    token was issued: a new token, minted after the revocation, is needed."""

    code = "token_revoked"


class ChannelNotGranted(EventgateError):
    code = "channel_forbidden"
    status = 403

    def __init__(self, message: str, channel: str) -> None:
        super().__init__(message)
        self.channel = channel


class InvalidRequest(EventgateError, ValueError):
    """The request body is not what the endpoint accepts (content type, JSON, shape, fields)."""

    code = "invalid_request"
    status = 400


class InvalidJSON(InvalidRequest):
    """The request body does not parse as JSON."""

    code = "invalid_json"


class InvalidCursor(EventgateError, ValueError):
    code = "invalid_cursor"
    status = 400


class PublishError(EventgateError):
    """Redis did not confirm that the event was stored: it was not published."""

    code = "publish_failed"
    status = 503


class NotDurable(PublishError):
    """Redis stored the event but fewer replicas than ``EVENTGATE_DURABLE_REPLICAS`` confirmed
    holding it in time: a failover may lose it, or it may survive. Retrying with the same
    idempotency key is safe: it stores nothing twice."""

    code = "not_durable"
    status = 503


class RedisFull(PublishError):
    """Redis refused the write because it reached its ``maxmemory`` (the stack runs it with
    ``noeviction``: a full Redis refuses publishes rather than evict logs). Nothing was stored;
    retrying is safe once logs have expired or Redis has more memory."""

    code = "redis_full"
    status = 503


class IdempotencyKeyReused(EventgateError):
    """An idempotency key came back with other events than the publish it first answered."""

    code = "idempotency_key_reused"
    status = 409


class TooBusy(EventgateError):
    """A capacity limit refused the request; the caller may retry after ``retry_after`` seconds
    (sent as ``Retry-After``)."""

    code = "server_busy"
    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RedisUnreachable(TooBusy):
    """This stream node reaches no node of its Redis Cluster (its link to them cut): another
    stream node may. The fast path answers nothing and closes the connection, so that a proxy
    tries its next node (nginx's ``proxy_next_upstream error``, which also sets this one aside
    for a while) and a browser's EventSource, seeing a network error, reconnects; this answer
    (503 JSON) is the Flask door's."""

    code = "redis_unreachable"
    status = 503

    @classmethod
    def answering(cls, error: BaseException, consequence: str) -> RedisUnreachable:
        """The refusal of a request Redis failed with ``error``: a one-second retry, and a
        sentence naming the failure's kind (never its text: it may hold a URL) and
        ``consequence``, what the caller does not get."""
        return cls(
            f"Redis did not answer ({type(error).__name__}), so {consequence}", retry_after=1
        )


class TooManyStreams(TooBusy):
    """The token's subject already holds as many open streams as it may."""

    code = "too_many_streams"
    status = 429


class TooManyChannels(EventgateError):
    """A stream asked for more channels than one stream may carry."""

    code = "too_many_channels"
    status = 400


class StreamFailed(EventgateError):
    """A bug while opening a stream: the client is told to retry, never shown a traceback."""

    code = "internal_error"
    status = 500

    def __init__(self) -> None:
        super().__init__("The stream server failed; retry.")


class UnsupportedServer(EventgateError):
    """The stream app runs under a server that cannot hand it the client's socket."""

    code = "unsupported_server"
    status = 500
