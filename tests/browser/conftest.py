"""Fixtures for the browser tests: the production edge (HTTP/2 over TLS, nginx) in front of the
module's stack, and a Chromium that trusts that edge's certificate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chromium import chromium_context
from tests.ops.production import StackEdge, edge_nginx, served_by
from tests.servers import LOOPBACK


@pytest.fixture(scope="module")
def stack_edge(stack, test_ca, tmp_path_factory) -> Iterator[StackEdge]:
    """deploy/production/'s edge rendered for loopback, run by the system's nginx, its upstreams
    the module's stack's web and stream pools, its certificate the test CA's leaf."""
    with edge_nginx(
        tmp_path_factory.mktemp("stack-edge"),
        web_nodes=(f"{LOOPBACK}:{stack.web_port}",),
        stream_nodes=(f"{LOOPBACK}:{stack.stream_port}",),
        **served_by(test_ca),
    ) as (production, nginx):
        yield StackEdge(production, nginx)


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
