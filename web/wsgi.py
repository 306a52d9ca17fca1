"""The WSGI entry point for gunicorn (``web.wsgi:app``); settings come from the environment.

A configuration gunicorn must not run (a production start with a missing or weak secret) stops
the pool with one line saying why, not a traceback per worker.
"""

from shared.gunicornerrors import refuse_bad_config
from web import create_app

app = create_app(refuse_bad_config())
