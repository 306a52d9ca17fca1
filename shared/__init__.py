"""Code both apps agree on: settings, names, tokens, events, Redis keys, the Publisher.

Imports neither Flask nor gevent, so it is safe in every process and quick to unit-test.
"""
