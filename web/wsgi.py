"""The WSGI entry point for gunicorn (``eventgate.web.wsgi:app``); settings come from the
environment.

A configuration gunicorn must not run (a production start with a missing or weak secret) stops
the pool with one line saying why, not a traceback per worker.
"""

from eventgate.shared.pools import refuse_bad_config
from eventgate.web.app import create_app

app = create_app(refuse_bad_config())
