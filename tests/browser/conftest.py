"""Fixtures for the browser tests: a Chromium that trusts the test CA's leaf, the certificate of
``stack_edge``, the production edge in front of the module's stack (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.chromium import chromium_context


@pytest.fixture(scope="module")
def tls_browser(test_ca, tmp_path_factory):
    """A headless Chromium context that accepts the test CA's leaf certificate, and no other
    that its own trust store would refuse.

    Chromium on Linux reads its roots from NSS (a ~/.pki/nssdb, with certutil to fill it), not
    from a flag; ``--ignore-certificate-errors-spki-list`` pins the one public key instead, a
    trust as narrow as the CA's (narrower: one key). ``ignore_https_errors`` would accept any
    certificate, so a wrong one served by nginx would go unnoticed. Chromium honours the flag
    only with a user-data-dir, which a persistent context has."""
    spki = test_ca.leaf_spki_sha256()
    with chromium_context(tmp_path_factory.mktemp("chromium-tls-profile"),
                          [f"--ignore-certificate-errors-spki-list={spki}"]) as context:
        yield context
