"""The ``eventgate`` command: init dev secrets, publish, mint tokens, tail streams; for ops,
``status`` (the stream workers, Redis, the logs), ``replay`` (a channel's log after an id),
``migrate`` (every log copied to another Redis, ids kept) and ``doctor`` (a deployment checked
through its proxy chain, as a browser meets it).

The commands are written once, as a click group (Flask's own command-line library), and run two
ways: ``eventgate …`` reads its settings with ``Config.from_env()`` (the environment, then
``var/eventgate.env``); ``flask eventgate …`` is the same group added to a Flask app's command
line by ``EventGate.init_app``, with that EventGate's Config. Expected failures print one line on
stderr and exit non-zero — 2 for a mistake in the command or the settings, 1 when a server
(Redis, the stream pool) is not there or ``doctor`` found a fault, 3 when ``migrate`` left
logs it could not copy — never a traceback.

Importing this module needs only the base install: ``tail``, ``status``, ``replay`` and
``relay`` import what the ``server`` extra (and, for ``relay``, the ``outbox`` extra) brings when
they run (``server_module``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import IO, Any
from urllib.parse import urlsplit

import click
import redis

from eventgate import doctor as checkup
from eventgate import migration
from eventgate.probe import Site
from eventgate.shared.config import (
    ENV_FILE_NAME,
    Config,
    read_env_file,
    var_dir_from_env,
    write_dev_env,
)
from eventgate.shared.errors import (
    ConfigError,
    EventgateError,
    InvalidEvent,
    InvalidName,
    PublishError,
)
from eventgate.shared.names import validate_channel
from eventgate.shared.publisher import Publisher
from eventgate.shared.publishkeys import parse_publish_key
from eventgate.shared.redisconn import connect
from eventgate.shared.tokens import ChannelTokens

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_INTERRUPTED = 130

#: The top-level modules that only ``pip install "eventgate[server]"`` brings (pyproject.toml).
SERVER_EXTRA = frozenset(
    {"gevent", "gunicorn", "supervisor", "prometheus_client", "sseclient", "tqdm"}
)
#: The top-level modules that only ``pip install "eventgate[outbox]"`` brings.
OUTBOX_EXTRA = frozenset({"sqlalchemy", "flask_sqlalchemy"})

#: click ``Context.meta`` key: how the running group loads its Config (``current_config``).
_LOAD_CONFIG = "eventgate.load_config"


class CommandError(click.ClickException):
    """An expected failure: ``message`` goes to stderr as one line, ``exit_code`` to the shell.

    A ClickException whose ``show`` prints ``eventgate: <message>`` (click's own is "Error: …"),
    so ``eventgate`` and ``flask eventgate`` report it alike."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"eventgate: {self.message}", file=file, err=file is None)


def server_module(command: str, name: str) -> ModuleType:
    """Import module ``name``, which needs the ``server`` extra (or the ``outbox`` one), for
    the command ``command``.

    The usual pattern for an optional extra: its packages are imported where a command runs,
    never at the top of this module, so the base install can import the command line; a missing
    one becomes one line that says what to install. An ImportError of anything else is a bug
    and propagates."""
    try:
        return import_module(name)
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing in SERVER_EXTRA:
            extra = "server"
        elif missing in OUTBOX_EXTRA:
            extra = "outbox"
        else:
            raise
        raise CommandError(
            f'the {command} command needs the {extra} extra: pip install "eventgate[{extra}]"'
        ) from None


def current_config() -> Config:
    """The Config of the group running the current command (``command_group``), loaded now:
    commands ask for it only once past what needs no settings (``init``, ``--help``, a missing
    extra), and a settings mistake becomes one line and exit 2."""
    load: Callable[[], Config] = click.get_current_context().meta[_LOAD_CONFIG]
    try:
        return load()
    except ConfigError as error:
        raise CommandError(error.message) from None


@click.command("init")
@click.option("--var-dir", type=click.Path(path_type=Path),
              help="directory for runtime files (default: $EVENTGATE_VAR_DIR or var)")
def init(var_dir: Path | None) -> None:
    """Write development secrets to var/ (once)."""
    try:
        path = write_dev_env(var_dir_from_env() if var_dir is None else var_dir)
    except OSError as error:
        raise CommandError(f"cannot write the env file: {error.strerror or error}.") from None
    click.echo(path)


@click.command("publish")
@click.argument("channel")
@click.option("--type", "event_type", default="message", metavar="T", help="event type")
@click.option("--data", default="null", metavar="JSON", help="event data as JSON")
def publish(channel: str, event_type: str, data: str) -> None:
    """Publish one event; prints its id."""
    config = current_config()
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise CommandError(
            "--data must be valid JSON (quote a string: --data '\"text\"')."
        ) from None
    try:
        publisher = Publisher.from_config(config)
        click.echo(publisher.publish(channel, value, event_type))
    except (InvalidName, InvalidEvent) as error:
        raise CommandError(error.message) from None
    except PublishError as error:
        raise CommandError(error.message, EXIT_UNAVAILABLE) from None
    except (UnicodeError, ValueError) as error:  # a malformed EVENTGATE_REDIS_URL, odd text
        raise CommandError(f"{error}.") from None


@click.command("token")
@click.argument("channels", nargs=-1, required=True, metavar="CHANNEL...")
@click.option("--ttl", type=int, metavar="SECONDS", help="lifetime in seconds")
@click.option("--subject", metavar="S", help="who the token is for")
def token(channels: tuple[str, ...], ttl: int | None, subject: str | None) -> None:
    """Print a stream token for channels (a name or prefix.*)."""
    click.echo(_mint(current_config(), channels, ttl, subject))


@click.command("tail")
@click.argument("channels", nargs=-1, required=True, metavar="CHANNEL...")
@click.option("--last-event-id", metavar="ID", help="resume after this event id")
@click.option("--url", metavar="BASE",
              help="public entry of the stack (default: http://127.0.0.1:$EVENTGATE_PORT)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per event")
def tail(
    channels: tuple[str, ...], last_event_id: str | None, url: str | None, as_json: bool
) -> None:
    """Print a stream's events as they arrive."""
    following = server_module("tail", "eventgate.tail")
    config = current_config()
    try:  # a stream carries exact channels; a prefix.* grant is not one
        names = [validate_channel(name) for name in channels]
    except InvalidName as error:
        raise CommandError(error.message) from None
    try:
        stream = following.Tail(
            url or f"http://127.0.0.1:{config.port}",
            names,
            mint_token=lambda: _mint(config, names, None, "eventgate-tail"),
            last_event_id=last_event_id,
            as_json=as_json,
            read_timeout_seconds=max(config.heartbeat_seconds * 3, 10.0),
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        stream.run(sys.stdout)
    except following.TailError as error:
        raise CommandError(error.message, EXIT_UNAVAILABLE) from None
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # `eventgate tail ... | head`: the reader left, so do we, quietly
        _silence_stdout()


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--logs", type=int, default=1000, metavar="N",
              help="count the logs of at most N channels (default 1000)")
def status(as_json: bool, logs: int) -> None:
    """The gateway at a glance: stream workers, Redis, logs.

    Per stream worker: streams, channels, queues, slow drops, lag; Redis's memory; the channel
    logs' lengths; while an ``eventgate relay`` runs, the outbox's waiting rows and their age."""
    report = server_module("status", "eventgate.report")
    config = current_config()
    try:
        report.print_status(connect(config), sys.stdout, as_json=as_json, log_limit=logs)
    except (redis.RedisError, OSError) as error:
        raise _redis_down(error) from None


@click.command("relay")
@click.option("--database", metavar="URL",
              help="the outbox's SQLAlchemy database URL (default: $EVENTGATE_OUTBOX_URL)")
@click.option("--sweep-seconds", type=float, default=5.0, show_default=True, metavar="S",
              help="relay what waits at least this often (PostgreSQL also wakes it on NOTIFY)")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="serve the outbox metrics on this port, 0 for none (default: "
                   "$EVENTGATE_OUTBOX_METRICS_PORT, else 0)")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="the address the metrics port binds")
def relay(
    database: str | None, sweep_seconds: float, metrics_port: int | None, metrics_host: str
) -> None:
    """Relay the transactional outbox to Redis until stopped.

    Publishes the rows apps committed into the outbox table, each once, in commit order per
    channel; SIGTERM or Ctrl-C stop it after the current round."""
    program = server_module("relay", "eventgate.relayprogram")
    config = current_config()
    url = database or config.outbox_url
    if not url:
        raise CommandError(
            "no outbox database: set EVENTGATE_OUTBOX_URL or pass --database URL "
            "(e.g. sqlite:///var/outbox.db)."
        )
    port = config.outbox_metrics_port if metrics_port is None else metrics_port
    options = program.RelayOptions(url, sweep_seconds, metrics_host, port)
    try:
        program.run(config, options)
    except program.StartError as error:
        raise CommandError(error.message, error.exit_code) from None


@click.command("replay")
@click.argument("channel")
@click.option("--since", required=True, metavar="ID",
              help="an event id (print what follows it), or 0 for the whole log")
@click.option("--limit", type=int, metavar="N", help="print at most N events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per event")
@click.option("--progress/--no-progress", default=None,
              help="a progress bar on stderr (default: when stderr is a terminal)")
def replay(
    channel: str, since: str, limit: int | None, as_json: bool, progress: bool | None
) -> None:
    """Print a channel's stored events after an id."""
    report = server_module("replay", "eventgate.report")
    config = current_config()
    try:
        channel = validate_channel(channel)
    except InvalidName as error:
        raise CommandError(error.message) from None
    try:
        report.replay(connect(config), channel, since, sys.stdout, as_json=as_json,
                      limit=limit, progress=progress)
    except ValueError as error:
        raise CommandError(f"--since: {error}.") from None
    except BrokenPipeError:
        _silence_stdout()
    except (redis.RedisError, OSError) as error:
        raise _redis_down(error) from None


@click.command("migrate")
@click.option("--from", "source_url", required=True, metavar="URL",
              help="the Redis to copy the logs from (only read)")
@click.option("--to", "destination_url", required=True, metavar="URL",
              help="the Redis to copy them to (may be the same, to move 0.2's key form)")
@click.option("--dry-run", is_flag=True, help="count what would be copied; write nothing")
@click.option("--idempotency-records/--no-idempotency-records", default=True,
              help="copy the Idempotency-Key records too, when both are one Redis or both "
                   "a Cluster (default: yes)")
@click.option("--progress/--no-progress", default=None,
              help="a progress line on stderr (default: when stderr is a terminal)")
def migrate(
    source_url: str, destination_url: str, dry_run: bool, idempotency_records: bool,
    progress: bool | None,
) -> None:
    """Copy every channel log to another Redis, keeping ids.

    Each event keeps its id and fields, so browsers' cursors stay valid; run it again to pick
    up what was published meanwhile (it resumes, and copies nothing twice). A log the
    destination holds differently is left as it is (exit status 3). URLs of any form
    EVENTGATE_REDIS_URL takes: redis://, rediss://, unix://, redis+sentinel://,
    redis+cluster://."""
    sides = {}
    for option, url in (("--from", source_url), ("--to", destination_url)):
        try:
            sides[option] = migration.open_client(url)
            sides[option].ping()
        except ValueError as error:
            raise CommandError(f"{option}: {error}") from None
        except (redis.RedisError, OSError) as error:
            raise CommandError(
                f"{option}: Redis is not answering ({type(error).__name__}).", EXIT_UNAVAILABLE
            ) from None
    show = _progress_line(sys.stderr.isatty() if progress is None else progress)
    try:
        totals = migration.migrate(
            sides["--from"], sides["--to"], dry_run=dry_run, records=idempotency_records,
            same_redis=source_url == destination_url, on_progress=show,
        )
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as error:
        raise CommandError(
            f"a Redis failed ({type(error).__name__}: {error}); what was copied stays: run "
            "the same command again to resume.", EXIT_UNAVAILABLE,
        ) from None
    finally:
        show(None)
    for conflict in totals.conflicts:
        click.echo(f"eventgate: channel {conflict.channel}: {conflict.reason}", err=True)
    click.echo(totals.summary(dry_run))
    if totals.conflicts:
        raise CommandError(
            f"{len(totals.conflicts)} channels not copied (see above).", EXIT_CONFLICT
        )


@click.command("doctor")
@click.argument("url")
@click.option("--publish-key", metavar="KEY",
              help="the deployment's publisher key (default: $EVENTGATE_PUBLISH_KEY, then "
                   "var/eventgate.env); prefer the variable, which ps does not show")
@click.option("--origin", metavar="ORIGIN",
              help="check CORS for a page on this origin (https://app.example.com)")
@click.option("--channel", default=checkup.DEFAULT_CHANNEL, show_default=True, metavar="C",
              help="the channel the probe events go to (the key must allow it)")
@click.option("--idle-seconds", type=click.FloatRange(min=0, min_open=True),
              default=checkup.DEFAULT_IDLE_SECONDS, show_default=True, metavar="N",
              help="how long the idle check holds a stream with no events: above "
                   "EVENTGATE_HEARTBEAT and the longest idle timeout you want proven")
@click.option("--wait-seconds", type=click.FloatRange(min=0, min_open=True),
              default=checkup.DEFAULT_WAIT_SECONDS, show_default=True, metavar="N",
              help="how long to wait for an event before calling it held back")
@click.option("--pool-down", is_flag=True,
              help="the stream pool is stopped on purpose: check the retry fallback instead "
                   "of delivery")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="trust this CA for https:// (a private CA; default: the system's)")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per check: check, status, detail")
def doctor(
    url: str, publish_key: str | None, origin: str | None, channel: str, idle_seconds: float,
    wait_seconds: float, pool_down: bool, cacert: str | None, as_json: bool,
) -> None:
    """Check a deployment through its proxy chain, as a browser sees it.

    URL is the site's public address (https://events.example.com). One verdict per line:
    events arrive unbuffered (publish to arrival), heartbeats keep an idle stream open past the
    timeouts on the way, Last-Event-ID reaches the stream pool, the HTTP version at the edge,
    CORS for --origin, and the retry fallback (only with --pool-down: stop the stream pool
    first). Each FAIL says what to change. It publishes two small events on --channel.
    Exit status 0 when nothing failed, 1 when a check failed, 2 for a mistake in the command."""
    try:
        site = Site(url, cafile=cacert)
        channel = validate_channel(channel)
    except InvalidName as error:  # a ValueError too
        raise CommandError(f"--channel: {error.message}") from None
    except ValueError as error:
        raise CommandError(str(error)) from None
    if origin is not None and not _is_origin(origin):
        raise CommandError(
            f"--origin must be a page's origin, scheme://host[:port], not {origin!r}."
        )
    options = checkup.Options(
        publish_key=_doctor_key(publish_key), channel=channel, origin=origin,
        idle_seconds=idle_seconds, wait_seconds=wait_seconds, pool_down=pool_down,
    )
    if not as_json and not pool_down:
        click.echo(f"eventgate doctor: {site.origin} (the idle check takes {idle_seconds:g} s)",
                   err=True)
    failed = False
    for verdict in checkup.Doctor(site, options).run():
        failed = failed or verdict.status == checkup.FAIL
        if as_json:
            click.echo(json.dumps({"check": verdict.check, "status": verdict.status,
                                   "detail": verdict.detail}, ensure_ascii=False))
        else:
            click.echo(verdict.line())
    if failed:
        raise click.exceptions.Exit(EXIT_UNAVAILABLE)


def _doctor_key(given: str | None) -> str:
    """The publisher key for ``doctor``: the option, else the settings' first key (a scoped
    entry's key part). A remote check needs no signing secret, so a Config that cannot load
    is no error here: the variable or the env file is read alone."""
    if given:
        return given
    try:
        keys = current_config().publish_keys
    except CommandError:
        settings = {**read_env_file(var_dir_from_env() / ENV_FILE_NAME), **os.environ}
        keys = tuple(k for k in settings.get("EVENTGATE_PUBLISH_KEY", "").split(",") if k.strip())
    if not keys:
        raise CommandError(
            "no publisher key: set EVENTGATE_PUBLISH_KEY (or pass --publish-key) to the "
            "deployment's key."
        )
    try:
        return parse_publish_key(keys[0]).key
    except ConfigError as error:
        raise CommandError(error.message) from None


def _is_origin(text: str) -> bool:
    parts = urlsplit(text)
    return (parts.scheme in ("http", "https") and bool(parts.netloc)
            and parts.path in ("", "/") and not parts.query and not parts.fragment)


def _progress_line(enabled: bool) -> Callable[[migration.Totals | None], None]:
    """A progress callback: at most one line a second on stderr, rewritten in place on a
    terminal; None ends it."""
    last = [0.0]
    terminal = sys.stderr.isatty()

    def show(totals: migration.Totals | None) -> None:
        if not enabled or (totals is None and not last[0]):
            return
        if totals is None:
            if terminal:
                click.echo("", err=True)
            return
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        line = (f"migrate: {totals.logs} logs, {totals.events} events copied, "
                f"{totals.present} already there, {len(totals.conflicts)} conflicts")
        click.echo(f"\r{line}" if terminal else line, nl=not terminal, err=True)

    return show


def command_group(load_config: Callable[[], Config]) -> click.Group:
    """The eventgate commands as a click group named ``eventgate``; the commands that need
    settings get them from ``load_config``, called when one runs. ``cli`` below is the
    ``eventgate`` command; ``EventGate.init_app`` adds one to the app's ``flask`` command."""

    @click.group("eventgate")
    def group() -> None:
        """eventgate: publish events and watch SSE streams."""
        click.get_current_context().meta[_LOAD_CONFIG] = load_config

    for command in (init, publish, token, tail, status, relay, replay, migrate, doctor):
        group.add_command(command)
    return group


cli = command_group(Config.from_env)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    click's standalone mode is off so that an interrupt exits 130 without "Aborted!"."""
    try:
        result = cli.main(args=argv, prog_name="eventgate", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK  # an int: click's --help exit


def _mint(config: Config, channels: Sequence[str], ttl: int | None, subject: str | None) -> str:
    try:
        return ChannelTokens.from_config(config).issue(channels, subject, ttl).token
    except EventgateError as error:
        raise CommandError(error.message) from None
    except ValueError as error:  # a bad ttl or subject, or a token over max_token_bytes
        raise CommandError(f"{error}.") from None


def _redis_down(error: BaseException) -> CommandError:
    return CommandError(f"Redis is not answering ({type(error).__name__}).", EXIT_UNAVAILABLE)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
