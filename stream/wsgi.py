"""The stream pool's WSGI entry point: ``gunicorn -k gevent stream.wsgi:app``.

gunicorn's gevent worker monkey-patches before it imports this module; nothing is patched here.
"""

from stream import create_app

app = create_app()
