"""The command line on the base install: importing it needs nothing of the ``server`` extra, and
a command that does says what to install in one line (exit 2), never a traceback.

The import failures are made in-process (``sys.modules[name] = None`` makes ``import name``
fail); a fresh venv without the extra is tested where the wheel is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eventgate.cli import SERVER_EXTRA, main, server_module


@pytest.mark.parametrize(
    ("command", "missing", "module"),
    [
        (["tail", "orders.42"], "sseclient", "eventgate.tail"),
        (["replay", "orders.42", "--since", "0"], "tqdm", "eventgate.report"),
        (["status"], "tqdm", "eventgate.report"),
    ],
)
def test_a_server_command_without_the_extra_says_what_to_install(
    command, missing, module, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, module, raising=False)  # so that it is imported again

    assert main(command) == 2

    err = capsys.readouterr().err
    assert err == (f"eventgate: the {command[0]} command needs the server extra: "
                   'pip install "eventgate[server]"\n')


def test_an_import_error_of_our_own_is_not_blamed_on_the_extra():
    with pytest.raises(ModuleNotFoundError):
        server_module("tail", "eventgate.no_such_module")


def test_the_command_line_imports_nothing_of_the_extra():
    # A fresh interpreter: this one has loaded the extra's packages for other tests.
    code = (
        "import sys\n"
        "import eventgate.cli, eventgate.web.extension\n"
        f"extra = {sorted(SERVER_EXTRA)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in extra))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"



def test_relay_without_the_outbox_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "eventgate.relayprogram", raising=False)

    assert main(["relay"]) == 2

    assert capsys.readouterr().err == (
        'eventgate: the relay command needs the outbox extra: pip install "eventgate[outbox]"\n'
    )
