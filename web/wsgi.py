"""The WSGI entry point for gunicorn (``web.wsgi:app``); settings come from the environment.

A configuration gunicorn must not run (a production start with a missing or weak secret) stops
the pool with one line saying why, not a traceback per worker.
"""

from gunicorn.errors import AppImportError

from shared.config import Config
from shared.errors import ConfigError
from web import create_app

try:
    config = Config.from_env()
except ConfigError as error:
    # gunicorn prints this error's message alone and halts the master (exit status 4).
    raise AppImportError(f"eventgate: {error}") from None

app = create_app(config)
