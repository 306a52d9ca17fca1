"""Config.from_env: explicit environ, the var/eventgate.env fallback, refusals; write_dev_env."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from eventgate.shared.config import ENV_FILE_NAME, Config, read_env_file, write_dev_env
from eventgate.shared.errors import ConfigError

# Long and varied, as secrets.token_urlsafe(32) makes them ("s" * 40 is long but weak).
STRONG = "sK8qT2vX9mLpR4wZ7yB1nC6dF3gH5jE0aU-_oIxV"
STRONG2 = "pQ3rS8tU1vW6xY9zA2bC5dE7fG0hJ4kL-_mNoP"


def env(var_dir: Path, **values: str) -> dict[str, str]:
    """An explicit environ: always names the var dir, so no test reads the checkout's var/."""
    return {"EVENTGATE_VAR_DIR": str(var_dir), **{f"EVENTGATE_{k}": v for k, v in values.items()}}


def test_from_env_explicit_mapping(var_dir):
    config = Config.from_env(
        env(
            var_dir,
            SECRET_KEY="new-key, old-key ,,",
            PUBLISH_KEY="pk1,pk2",
            PORT="9080",
            WEB_PORT="9000",
            STREAM_PORT="9001",
            REDIS_PORT="7000",
            HEARTBEAT="2.5",
            RETRY_MS="1500",
            MAX_BATCH_EVENTS="10",
        )
    )
    assert config.secret_keys == ("new-key", "old-key")
    assert config.publish_keys == ("pk1", "pk2")
    assert (config.port, config.web_port, config.stream_port) == (9080, 9000, 9001)
    assert config.redis_port == 7000
    assert config.redis_url == "redis://127.0.0.1:7000/0"  # follows the redis port
    assert config.heartbeat_seconds == 2.5
    assert config.retry_ms == 1500
    assert config.max_batch_events == 10
    assert config.var_dir == var_dir


def test_defaults(var_dir):
    config = Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p"))
    assert (config.port, config.web_port, config.stream_port, config.redis_port) == (
        8080,
        8000,
        8001,
        6399,
    )
    assert config.redis_url == "redis://127.0.0.1:6399/0"
    assert config.heartbeat_seconds == 15.0
    assert config.environment == "development"


def test_redis_url_overrides_the_port(var_dir):
    config = Config.from_env(
        env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", REDIS_URL="redis://h:1/2", REDIS_PORT="7")
    )
    assert config.redis_url == "redis://h:1/2"


def test_from_env_ignores_the_process_environment_when_given_a_mapping(var_dir, monkeypatch):
    monkeypatch.setenv("EVENTGATE_SECRET_KEY", "from-process")
    config = Config.from_env(env(var_dir, SECRET_KEY="from-mapping", PUBLISH_KEY="p"))
    assert config.secret_keys == ("from-mapping",)


def test_from_env_defaults_to_the_process_environment(var_dir, monkeypatch):
    monkeypatch.setenv("EVENTGATE_VAR_DIR", str(var_dir))
    monkeypatch.setenv("EVENTGATE_SECRET_KEY", "proc-key")
    monkeypatch.setenv("EVENTGATE_PUBLISH_KEY", "proc-pk")
    assert Config.from_env().secret_keys == ("proc-key",)


# --- env file ----------------------------------------------------------------------------------


def write_env_file(var_dir: Path, text: str) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / ENV_FILE_NAME).write_text(text, encoding="utf-8")


def test_env_file_fallback(var_dir):
    write_env_file(
        var_dir,
        "# comment\n\nEVENTGATE_SECRET_KEY = file-key \nEVENTGATE_PUBLISH_KEY=file-pk\n"
        "not a setting\nEVENTGATE_HEARTBEAT=3\n",
    )
    config = Config.from_env(env(var_dir))
    assert config.secret_keys == ("file-key",)
    assert config.publish_keys == ("file-pk",)
    assert config.heartbeat_seconds == 3.0


def test_environment_overrides_env_file(var_dir):
    write_env_file(var_dir, "EVENTGATE_SECRET_KEY=file-key\nEVENTGATE_PUBLISH_KEY=file-pk\n")
    config = Config.from_env(env(var_dir, SECRET_KEY="env-key"))
    assert config.secret_keys == ("env-key",)
    assert config.publish_keys == ("file-pk",)


def test_read_env_file_missing_is_empty(tmp_path):
    assert read_env_file(tmp_path / "nope.env") == {}


# --- refusals ----------------------------------------------------------------------------------


def test_missing_secret_key(var_dir):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, PUBLISH_KEY="p"))
    assert "EVENTGATE_SECRET_KEY" in caught.value.message
    assert "eventgate init" in caught.value.message  # says how to fix it


def test_missing_publish_key(var_dir):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, SECRET_KEY="k"))
    assert "EVENTGATE_PUBLISH_KEY" in caught.value.message


@pytest.mark.parametrize("value", ["", " ", ",", " , ,"])
def test_blank_secret_is_missing(var_dir, value):
    with pytest.raises(ConfigError):
        Config.from_env(env(var_dir, SECRET_KEY=value, PUBLISH_KEY="p"))


@pytest.mark.parametrize(
    ("secret", "publish"),
    [("weak-Xy7", STRONG2), (STRONG, "weak-Xy7"), (f"{STRONG},weak-Xy7", STRONG2)],
)
def test_production_refuses_a_weak_secret(var_dir, secret, publish):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, ENV="production", SECRET_KEY=secret, PUBLISH_KEY=publish))
    assert "weak-Xy7" not in caught.value.message, "the message must not echo the secret"


def test_production_accepts_strong_secrets(var_dir):
    config = Config.from_env(env(var_dir, ENV="production", SECRET_KEY=STRONG, PUBLISH_KEY=STRONG2))
    assert config.environment == "production"


def test_development_accepts_a_short_secret(var_dir):
    assert Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p")).secret_keys == ("k",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "80x"),
        ("WEB_PORT", ""),
        ("STREAM_PORT", "8001.5"),
        ("REDIS_PORT", "six"),
        ("HEARTBEAT", "fast"),
        ("RETRY_MS", "1e3"),
        ("MAX_BATCH_EVENTS", "many"),
    ],
)
def test_non_number_setting(var_dir, name, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", **{name: value}))
    assert f"EVENTGATE_{name}" in caught.value.message


@pytest.mark.parametrize("value", ["0", "-1"])
def test_heartbeat_must_be_positive(var_dir, value):
    with pytest.raises(ConfigError):
        Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", HEARTBEAT=value))


def test_config_is_frozen(var_dir):
    config = Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p"))
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


# --- write_dev_env -----------------------------------------------------------------------------


def test_write_dev_env_creates_a_private_file_with_two_random_secrets(var_dir):
    path = write_dev_env(var_dir)
    assert path == var_dir / ENV_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = read_env_file(path)
    secret, publish = values["EVENTGATE_SECRET_KEY"], values["EVENTGATE_PUBLISH_KEY"]
    assert secret != publish
    assert len(secret) >= 32 and len(publish) >= 32
    # and from_env picks them up, strong enough even for production
    config = Config.from_env(env(var_dir, ENV="production"))
    assert config.secret_keys == (secret,)
    assert config.publish_keys == (publish,)


def test_write_dev_env_is_idempotent(var_dir):
    path = write_dev_env(var_dir)
    before = path.read_bytes()
    assert write_dev_env(var_dir) == path
    assert path.read_bytes() == before


def test_write_dev_env_leaves_an_existing_file_alone(var_dir):
    write_env_file(var_dir, "EVENTGATE_SECRET_KEY=mine\nEVENTGATE_PUBLISH_KEY=mine-too\n")
    write_dev_env(var_dir)
    assert read_env_file(var_dir / ENV_FILE_NAME)["EVENTGATE_SECRET_KEY"] == "mine"


def test_two_installs_get_different_secrets(tmp_path):
    first = read_env_file(write_dev_env(tmp_path / "one"))
    second = read_env_file(write_dev_env(tmp_path / "two"))
    assert first["EVENTGATE_SECRET_KEY"] != second["EVENTGATE_SECRET_KEY"]
    assert first["EVENTGATE_PUBLISH_KEY"] != second["EVENTGATE_PUBLISH_KEY"]


def test_repr_holds_no_secret():
    from eventgate.shared.config import Config

    config = Config(
        secret_keys=("s" * 40,), publish_keys=("p" * 40,), ops_key="o" * 40,
        redis_url="redis://:hunter2hunter2@127.0.0.1:6399/0",
    )
    text = repr(config)
    assert "s" * 40 not in text and "p" * 40 not in text and "o" * 40 not in text
    assert "hunter2" not in text



def test_idempotency_and_durability_settings(var_dir):
    config = Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p",
                                 IDEMPOTENCY_SECONDS="60", DURABLE_REPLICAS="2"))
    assert (config.idempotency_seconds, config.durable_replicas) == (60, 2)
    defaults = Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p"))
    assert (defaults.idempotency_seconds, defaults.durable_replicas) == (86400, 0)


@pytest.mark.parametrize(("name", "value"), [("IDEMPOTENCY_SECONDS", "0"),
                                             ("DURABLE_REPLICAS", "-1")])
def test_idempotency_and_durability_refuse_meaningless_values(var_dir, name, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", **{name: value}))
    assert f"EVENTGATE_{name}" in caught.value.message


def test_outbox_url_is_read_and_kept_out_of_repr(var_dir):
    url = "postgresql+psycopg://app:hunter2hunter2@127.0.0.1:5432/app"
    config = Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", OUTBOX_URL=url,
                                 OUTBOX_METRICS_PORT="9102"))
    assert (config.outbox_url, config.outbox_metrics_port) == (url, 9102)
    assert "hunter2" not in repr(config)
    assert Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p")).outbox_url == ""


@pytest.mark.parametrize(("url", "sentence"), [
    ("postgresql://app:hunter2hunter2@db:port/app", "is not a database URL SQLAlchemy can read"),
    ("not a url", "is not a database URL SQLAlchemy can read"),
    ("mysql+pymysql://app:hunter2hunter2@db/app", "names a 'mysql' database"),
])
def test_outbox_url_refused_in_a_sentence_without_the_url(var_dir, url, sentence):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(var_dir, SECRET_KEY="k", PUBLISH_KEY="p", OUTBOX_URL=url))
    message = caught.value.message
    assert message.startswith("EVENTGATE_OUTBOX_URL ") and sentence in message
    assert "hunter2" not in message and message.endswith(".")
