"""flask-sse 1.0 as its README sets it up, for the benchmark's comparison runs only.

``gunicorn -k gevent -w 1 --pythonpath bench flask_sse_app:app`` with ``BENCH_REDIS_URL`` set.
Streams are ``GET /stream?channel=NAME``; flask-sse opens one Redis pub/sub connection per stream.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")


@app.get("/healthz")
def healthz():
    return {"status": "ok", "pid": os.getpid()}
