"""The stream pool's WSGI entry point: ``gunicorn -k gevent eventgate.stream.wsgi:app``.

gunicorn's gevent worker monkey-patches before it imports this module; nothing is patched here.
A configuration gunicorn must not run (a production start with a missing or weak secret) stops
the pool with one line saying why, not a traceback per worker.
"""

from eventgate.shared.pools import refuse_bad_config
from eventgate.stream.app import create_app

app = create_app(refuse_bad_config())
