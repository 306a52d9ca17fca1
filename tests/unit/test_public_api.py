"""The public face (eventgate/__init__.py): every name in __all__ resolves, every contract error
class is exported, and importing the face loads nothing until a name is used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import eventgate
from eventgate.shared import errors


def test_every_exported_name_resolves_to_its_defining_module():
    for name in eventgate.__all__:
        value = getattr(eventgate, name)
        assert value is not None, name
        if inspect.isclass(value):
            assert value.__module__.startswith("eventgate."), name


def test_every_error_class_is_exported():
    defined = {
        name for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.EventgateError)
    }
    assert defined <= set(eventgate.__all__), defined - set(eventgate.__all__)


def test_an_unknown_name_is_an_attribute_error():
    try:
        eventgate.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("eventgate.NoSuchThing resolved")


def test_importing_the_face_loads_no_flask_until_a_name_is_used():
    # eventgate.shared.* is imported through this package by every process (the stream pool's
    # gunicorn master among them): the face must cost nothing until it is used.
    code = (
        "import sys, eventgate\n"
        "assert 'flask' not in sys.modules and 'eventgate.web' not in sys.modules\n"
        "from eventgate import Publisher\n"
        "assert 'flask' not in sys.modules, 'Publisher pulled in Flask'\n"
        "from eventgate import EventGate\n"
        "assert 'flask' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
