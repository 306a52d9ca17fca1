"""The ``eventgate`` command: init dev secrets, publish, mint tokens, tail streams; for ops,
``status`` (the stream workers, Redis, the logs) and ``replay`` (a channel's log after an id).

Every command reads its settings with ``Config.from_env()`` (the environment, then
``var/eventgate.env``). Expected failures print one line on stderr and exit non-zero — 2 for a
mistake in the command or the settings, 1 when a server (Redis, the stream pool) is not there —
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import redis

from eventgate.shared.config import Config, var_dir_from_env, write_dev_env
from eventgate.shared.errors import (
    ConfigError,
    EventgateError,
    InvalidEvent,
    InvalidName,
    PublishError,
)
from eventgate.shared.names import validate_channel
from eventgate.shared.publisher import Publisher
from eventgate.shared.redisconn import connect
from eventgate.shared.tokens import ChannelTokens
from eventgate.web.opscli import print_status
from eventgate.web.opscli import replay as replay_log
from eventgate.web.tail import Tail, TailError

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An expected failure: ``message`` goes to stderr, ``exit_code`` to the shell."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except (CommandError, ConfigError) as error:
        print(f"eventgate: {error.message}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventgate", description="eventgate: publish events and watch SSE streams."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = commands.add_parser("init", help="write development secrets to var/ (once)")
    init.add_argument(
        "--var-dir", type=Path,
        help="directory for runtime files (default: $EVENTGATE_VAR_DIR or var)",
    )
    init.set_defaults(run=_init)

    publish = commands.add_parser("publish", help="publish one event; prints its id")
    publish.add_argument("channel", metavar="CHANNEL")
    publish.add_argument("--type", default="message", metavar="T", help="event type")
    publish.add_argument("--data", default="null", metavar="JSON", help="event data as JSON")
    publish.set_defaults(run=_publish)

    token = commands.add_parser("token", help="print a stream token for channels")
    token.add_argument("channels", nargs="+", metavar="CHANNEL", help="channel or prefix.*")
    token.add_argument("--ttl", type=int, metavar="SECONDS", help="lifetime in seconds")
    token.add_argument("--subject", metavar="S", help="who the token is for")
    token.set_defaults(run=_token)

    tail = commands.add_parser("tail", help="print a stream's events as they arrive")
    tail.add_argument("channels", nargs="+", metavar="CHANNEL")
    tail.add_argument("--last-event-id", metavar="ID", help="resume after this event id")
    tail.add_argument(
        "--url", metavar="BASE",
        help="public entry of the stack (default: http://127.0.0.1:$EVENTGATE_PORT)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.set_defaults(run=_tail)

    status = commands.add_parser(
        "status", help="stream workers (streams, channels, queues, lag), Redis memory, logs"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--logs", type=int, default=1000, metavar="N",
                        help="count the logs of at most N channels (default 1000)")
    status.set_defaults(run=_status)

    replay = commands.add_parser("replay", help="print a channel's stored events after an id")
    replay.add_argument("channel", metavar="CHANNEL")
    replay.add_argument("--since", required=True, metavar="ID",
                        help="an event id (print what follows it), or 0 for the whole log")
    replay.add_argument("--limit", type=int, metavar="N", help="print at most N events")
    replay.add_argument("--json", action="store_true", help="one JSON object per event")
    replay.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar on stderr (default: when stderr is a terminal)")
    replay.set_defaults(run=_replay)
    return parser


def _init(args: argparse.Namespace) -> int:
    var_dir = var_dir_from_env() if args.var_dir is None else args.var_dir
    try:
        path = write_dev_env(var_dir)
    except OSError as error:
        raise CommandError(f"cannot write the env file: {error.strerror or error}.") from None
    print(path)
    return EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    config = Config.from_env()
    try:
        data = json.loads(args.data)
    except (ValueError, RecursionError):
        raise CommandError(
            "--data must be valid JSON (quote a string: --data '\"text\"')."
        ) from None
    try:
        publisher = Publisher(connect(config), config)
        print(publisher.publish(args.channel, data, args.type), flush=True)
    except (InvalidName, InvalidEvent) as error:
        raise CommandError(error.message) from None
    except PublishError as error:
        raise CommandError(error.message, EXIT_UNAVAILABLE) from None
    except (UnicodeError, ValueError) as error:  # a malformed EVENTGATE_REDIS_URL, odd text
        raise CommandError(f"{error}.") from None
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    config = Config.from_env()
    print(_mint(config, args.channels, args.ttl, args.subject))
    return EXIT_OK


def _tail(args: argparse.Namespace) -> int:
    config = Config.from_env()
    base_url = args.url or f"http://127.0.0.1:{config.port}"
    try:  # a stream carries exact channels; a prefix.* grant is not one
        channels = [validate_channel(name) for name in args.channels]
    except InvalidName as error:
        raise CommandError(error.message) from None
    try:
        tail = Tail(
            base_url,
            channels,
            mint_token=lambda: _mint(config, channels, None, "eventgate-tail"),
            last_event_id=args.last_event_id,
            as_json=args.json,
            read_timeout_seconds=max(config.heartbeat_seconds * 3, 10.0),
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        tail.run(sys.stdout)
    except TailError as error:
        raise CommandError(error.message, EXIT_UNAVAILABLE) from None
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `eventgate tail ... | head`: the reader left, so do we, quietly
        _silence_stdout()
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    config = Config.from_env()
    try:
        print_status(connect(config), sys.stdout, as_json=args.json, log_limit=args.logs)
    except (redis.RedisError, OSError) as error:
        raise CommandError(
            f"Redis is not answering ({type(error).__name__}).", EXIT_UNAVAILABLE
        ) from None
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    config = Config.from_env()
    try:
        channel = validate_channel(args.channel)
    except InvalidName as error:
        raise CommandError(error.message) from None
    try:
        replay_log(connect(config), channel, args.since, sys.stdout, as_json=args.json,
                   limit=args.limit, progress=args.progress)
    except ValueError as error:
        raise CommandError(f"--since: {error}.") from None
    except (redis.RedisError, OSError) as error:
        if isinstance(error, BrokenPipeError):
            _silence_stdout()
            return EXIT_OK
        raise CommandError(
            f"Redis is not answering ({type(error).__name__}).", EXIT_UNAVAILABLE
        ) from None
    return EXIT_OK


def _mint(config: Config, channels: Sequence[str], ttl: int | None, subject: str | None) -> str:
    tokens = ChannelTokens(
        config.secret_keys,
        default_ttl_seconds=config.token_ttl_seconds,
        max_ttl_seconds=config.token_max_ttl_seconds,
        max_token_bytes=config.max_token_bytes,
    )
    try:
        token, _ = tokens.issue(channels, subject, ttl)
    except EventgateError as error:
        raise CommandError(error.message) from None
    except ValueError as error:
        raise CommandError(f"{error}.") from None
    if len(token) > config.max_token_bytes:
        raise CommandError(f"the token would be longer than {config.max_token_bytes} bytes.")
    return token


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
