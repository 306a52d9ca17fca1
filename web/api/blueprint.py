"""The publisher API under ``/api``: publish events, mint stream tokens, read a channel's
history and presence, revoke subjects.

Every route here requires the publisher key (``web.auth``); the check runs before the body is
read, so an unauthenticated caller cannot make the server parse anything.
"""

from __future__ import annotations

from flask import Blueprint

from eventgate.web.api import events, history, presence, revocations, tokens
from eventgate.web.auth import require_publish_key

bp = Blueprint("api", __name__, url_prefix="/api")
bp.before_request(require_publish_key)
bp.register_blueprint(events.bp)
bp.register_blueprint(tokens.bp)
bp.register_blueprint(history.bp)
bp.register_blueprint(revocations.bp)
bp.register_blueprint(presence.bp)
