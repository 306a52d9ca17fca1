"""Test hosts: Linux network namespaces on one virtual switch, each with its own 127.X address.

What crosses between a stream node and a Redis node then crosses a network a test can cut.
Why this shape. The project only ever uses 127.0.0.0/8, so each network takes a /16 of it,
``127.X.0.0/16`` (X picked at random among 100–250, skipping any the root namespace already uses),
and every host gets one address there: the test process's own namespace (``Network.local``,
where the test's clients and nginx run) 127.X.0.1, every added host 127.X.0.2 upwards. Linux
treats 127/8 on anything but ``lo`` as martian and sends it all to ``lo`` (the ``local
127.0.0.0/8 dev lo`` route of table local, which is looked up before main); three things undo
that, all per interface or per namespace, so nothing global is touched:

- ``net.ipv4.conf.<if>.route_localnet=1`` on each host's interface (on the uplink in the root
  namespace): 127/8 may then be sent, received and ARPed on it. It is the only sysctl set (plus
  ``net.ipv6.conf.<if>.disable_ipv6=1``, so that the links carry no IPv6 chatter); both vanish
  with the interface.
- ``ip route add table local 127.X.0.0/16 dev <if>``: more specific than the /8, so the other
  hosts' addresses leave through the link; the host's own address keeps its /32 local route.
  In the root namespace this route goes with the uplink when it is deleted.
- permanent neighbour (ARP) entries for every other host: a link that is down or a peer that is
  cut then drops packets silently, as a pulled cable does, instead of the ARP failure that would
  answer "No route to host" after a few seconds.

The commands, for a network with run id RUN and X = 177 (see ``Network.open``/``add_host``)::

    ip netns add RUN-switch
    ip -n RUN-switch link add br0 type bridge && ip -n RUN-switch link set br0 up
    ip link add egnetTOKEN address MAC type veth peer name p1 netns RUN-switch   # the uplink
    ip link set egnetTOKEN alias RUN     # says which run it belongs to, for the stale sweep
    echo 1 > /proc/sys/net/ipv4/conf/egnetTOKEN/route_localnet
    ip addr add 127.177.0.1/16 dev egnetTOKEN && ip link set egnetTOKEN up
    ip route add table local 127.177.0.0/16 dev egnetTOKEN
    ip -n RUN-switch link set p1 master br0 up
    # each host N (2, 3, …):
    ip netns add RUN-NAME
    ip -n RUN-switch link add pN type veth peer name eth0 address MAC netns RUN-NAME
    ip -n RUN-switch link set pN master br0 up
    ip netns exec RUN-NAME sysctl -qw net.ipv4.conf.eth0.route_localnet=1
    ip -n RUN-NAME: link set lo up; addr add 127.177.0.N/16 dev eth0; link set eth0 up;
                    route add table local 127.177.0.0/16 dev eth0
    ip -n EACH neigh replace ADDRESS lladdr MAC dev IF nud permanent   # both ways, every pair

Cutting. ``Host.cut()`` sets the switch's end of the host's link down: the host's interface
loses carrier and drops what it sends, the bridge drops what is sent to it; nothing answers, no
RST, no ICMP (a connect times out, it is never refused). ``Network.partition(a, b)`` cuts only
between two groups: each side's neighbour entry for the other becomes a MAC no host has, so the
bridge floods those frames and nobody takes them. ``heal`` undoes either at once. Measured
(tests/cluster/test_hosts.py): a held connection's command fails with its own socket timeout
(TimeoutError after 1.0 s for a 1 s timeout), a new connect waits out its connect timeout (the
kernel's own SYN retries would take ~2 min), a stream worker notices in 2.3–4.0 s (its pub/sub
PING); after ``heal`` the next attempt succeeds at once (< 0.1 s). Link-down rather than netem
or iptables: this kernel has no sch_netem and the machine no iptables, and with permanent
neighbours a down link is already silent.

Names. Everything is named from the run id ``<prefix>-<pid>-<start ticks>-<token>``; ``open``
first removes what a dead run left (its creating process gone: pid absent or started later),
killing what still runs in those namespaces, so a killed earlier run never breaks the next one.
Redis nodes here must run with ``--protected-mode no`` (or a password): to Redis a peer at a
127.X address other than 127.0.0.1 is remote.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.servers import child_env

PREFIX = "egnet"
IP = shutil.which("ip") or "/usr/sbin/ip"
SWITCH = "switch"
BRIDGE = "br0"
INTERFACE = "eth0"
#: The MAC a partitioned peer's address is pointed at: no host has it.
NOWHERE_MAC = "02:65:67:ff:ff:ff"
FIRST_NAMESPACE_PORT = 10000
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21  # bits of /proc/self/status CapEff (linux/capability.h)


class NetworkError(RuntimeError):
    """An ``ip`` command failed; the message holds the command and its stderr."""


def unavailable() -> str | None:
    """Why hosts cannot be built on this machine (``None`` when they can): ``ip netns`` needs
    CAP_NET_ADMIN, and CAP_SYS_ADMIN for its mounts (root outside a restricted container)."""
    status = Path("/proc/self/status").read_text()
    capabilities = int(re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.MULTILINE)[1], 16)
    if not capabilities & (1 << CAP_NET_ADMIN) or not capabilities & (1 << CAP_SYS_ADMIN):
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if not Path(IP).exists():
        return "iproute2's ip is not installed"
    return None


def ip(*args: str, namespace: str | None = None, batch: Sequence[str] = ()) -> str:
    """Run ``ip [-n namespace] args`` (``batch``: these lines through ``-batch -``); its stdout."""
    command = [IP, *(["-n", namespace] if namespace else []), *args]
    if batch:
        command += ["-batch", "-"]
    done = subprocess.run(command, input="\n".join(batch), capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode:
        raise NetworkError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def _started(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot); ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _stale(name: str, prefix: str) -> bool:
    """Whether ``name`` (a namespace, or a link's alias) belongs to a run of ``prefix`` whose
    process is gone (a reused pid has a later start time)."""
    match = re.match(rf"{re.escape(prefix)}-(\d+)-(\d+)-[0-9a-f]+(-|$)", name)
    return match is not None and _started(int(match[1])) != int(match[2])


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list``)."""
    listing = ip("-j", "netns", "list").strip()
    return [entry["name"] for entry in json.loads(listing or "[]")]


def links(namespace: str | None = None) -> list[dict]:
    """``ip -j link show`` of a namespace (default: the root one)."""
    return json.loads(ip("-j", "link", "show", namespace=namespace) or "[]")


def _kill_inside(namespace: str) -> list[int]:
    """SIGKILL every process in ``namespace``; their pids."""
    try:
        pids = [int(pid) for pid in ip("netns", "pids", namespace).split()]
    except NetworkError:
        return []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def remove_stale(prefix: str = PREFIX) -> list[str]:
    """Remove the namespaces and root-namespace links that runs now dead left behind (a test
    process killed before its teardown); what was removed."""
    removed = []
    for name in namespaces():
        if _stale(name, prefix):
            _kill_inside(name)
            ip("netns", "del", name)
            removed.append(name)
    for link in links():
        if link["ifname"].startswith(prefix) and _stale(link.get("ifalias", ""), prefix):
            try:
                ip("link", "del", link["ifname"])
            except NetworkError:  # gone with its switch namespace meanwhile
                continue
            removed.append(link["ifname"])
    return removed


def _free_subnet() -> int:
    """A second octet X such that nothing in the root namespace uses 127.X.0.0/16."""
    used = set()
    for entry in json.loads(ip("-j", "addr", "show") or "[]"):
        used.update(info["local"] for info in entry.get("addr_info", []))
    used.update(route["dst"] for route in json.loads(ip("-j", "route", "show", "table", "local")))
    taken = {int(text.split(".")[1]) for text in used if text.startswith("127.")}
    choices = [octet for octet in range(100, 251) if octet not in taken]
    if not choices:
        raise NetworkError("no free 127.X.0.0/16 for a test network")
    return random.choice(choices)


class Host:
    """One machine of a ``Network``: a network namespace (``None`` for the test process's own)
    with one address, ``address``, on one link to the switch."""

    def __init__(self, network: Network, name: str, index: int, namespace: str | None,
                 interface: str) -> None:
        self.network = network
        self.name = name
        self.index = index
        self.namespace = namespace
        self.interface = interface  # its end of the link, in its namespace
        self.port_name = f"p{index}"  # the switch's end of the link
        self.address = str(network.subnet.network_address + index)
        self.mac = f"02:65:67:{network.octet:02x}:{index // 256:02x}:{index % 256:02x}"
        self._next_port = FIRST_NAMESPACE_PORT

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}>"

    @property
    def prefix(self) -> list[str]:
        """What a command line starts with to run in this host (tests/servers.py:RedisServer's
        ``prefix``). ``ip netns exec`` execs the program: the pid a Program holds is its own."""
        return [IP, "netns", "exec", self.namespace] if self.namespace else []

    def wrap(self, argv: Sequence[object]) -> list[str]:
        """``argv`` run inside this host: for tests/servers.py:Program(host.wrap(argv), log)."""
        return [*self.prefix, *(str(arg) for arg in argv)]

    def run(self, argv: Sequence[object], timeout: float = 30,
            **options) -> subprocess.CompletedProcess:
        """Run ``argv`` in this host to its end (output captured as text, status unchecked)."""
        options.setdefault("env", child_env())
        return subprocess.run(self.wrap(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, **options)

    def popen(self, argv: Sequence[object], **options) -> subprocess.Popen:
        """Start ``argv`` in this host (``subprocess.Popen`` options)."""
        options.setdefault("env", child_env())
        return subprocess.Popen(self.wrap(argv), **options)

    def take_port(self) -> int:
        """A TCP port free on ``address``. A namespace is private to the run, so its ports are
        handed out in turn (below the ephemeral range, so no outgoing connection holds one);
        the local host shares the machine, so there the kernel picks one."""
        if self.namespace is None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.address, 0))
                return sock.getsockname()[1]
        port, self._next_port = self._next_port, self._next_port + 1
        return port

    def cut(self) -> None:
        """Pull this host's cable: its link goes down, every packet to or from it is dropped
        (nothing is refused, nothing answers) until ``heal()``."""
        ip("link", "set", self.port_name, "down", namespace=self.network.switch)

    def heal(self) -> None:
        """Plug the cable back in: traffic flows again at once."""
        ip("link", "set", self.port_name, "up", namespace=self.network.switch)

    def point(self, peer: Host, mac: str) -> None:
        """Send what this host sends to ``peer`` to the link-layer address ``mac``."""
        ip("neigh", "replace", peer.address, "lladdr", mac, "dev", self.interface,
           "nud", "permanent", namespace=self.namespace)


class Network:
    """Hosts joined by one virtual switch (a bridge in its own namespace). ``open()`` builds it
    with ``local``, the test process's own host; ``add_host`` adds a namespace; ``close()``
    removes everything it made."""

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.run_id = f"{prefix}-{os.getpid()}-{_started(os.getpid())}-{secrets.token_hex(3)}"
        self.switch = f"{self.run_id}-{SWITCH}"
        self.uplink = f"{prefix}{self.run_id[-6:]}"
        if len(self.uplink) > 15:
            raise ValueError(f"prefix {prefix!r} too long for an interface name")
        self.octet = 0
        self.subnet = ipaddress.ip_network("127.0.0.0/16")
        self.hosts: dict[str, Host] = {}
        self.partitions: set[tuple[str, str]] = set()
        self.local: Host | None = None

    def open(self) -> Network:
        """Build the switch and the local host (after sweeping dead runs' leftovers); on a
        failure, remove what was built and raise. A subnet another run took meanwhile (its
        table-local route exists) is a retry with another one."""
        remove_stale(self.prefix)
        attempts = 3
        while True:
            attempts -= 1
            self.octet = _free_subnet()
            self.subnet = ipaddress.ip_network(f"127.{self.octet}.0.0/16")
            try:
                self._open()
                return self
            except NetworkError:
                self.close()
                if not attempts:
                    raise
            except BaseException:
                self.close()
                raise

    def _open(self) -> None:
        ip("netns", "add", self.switch)
        ip(namespace=self.switch, batch=[
            f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"])
        local = Host(self, "local", 1, None, self.uplink)
        self.local = local
        ip("link", "add", self.uplink, "address", local.mac, "type", "veth",
           "peer", "name", local.port_name, "netns", self.switch)
        ip("link", "set", self.uplink, "alias", self.run_id)
        conf = Path("/proc/sys/net")
        (conf / "ipv4/conf" / self.uplink / "route_localnet").write_text("1")
        if (conf / "ipv6/conf" / self.uplink).exists():
            (conf / "ipv6/conf" / self.uplink / "disable_ipv6").write_text("1")
        self._configure(local)
        self.hosts[local.name] = local

    def add_host(self, name: str) -> Host:
        """A new host ``name`` (letters, digits, dashes), reachable from every other one."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name) or name in (SWITCH, *self.hosts):
            raise ValueError(f"bad or taken host name {name!r}")
        host = Host(self, name, len(self.hosts) + 1, f"{self.run_id}-{name}", INTERFACE)
        ip("netns", "add", host.namespace)
        try:
            self._add(host)
        except BaseException:
            _kill_inside(host.namespace)
            with contextlib.suppress(NetworkError):
                ip("link", "del", host.port_name, namespace=self.switch)
            ip("netns", "del", host.namespace)
            raise
        self.hosts[name] = host
        return host

    def _add(self, host: Host) -> None:
        ip("link", "add", host.port_name, "type", "veth", "peer", "name", INTERFACE,
           "address", host.mac, "netns", host.namespace, namespace=self.switch)
        done = host.run(["sysctl", "-qew", f"net.ipv4.conf.{INTERFACE}.route_localnet=1",
                         f"net.ipv6.conf.{INTERFACE}.disable_ipv6=1"])
        if done.returncode:
            raise NetworkError(f"sysctl in {host.namespace}: {done.stderr.strip()}")
        ip(namespace=host.namespace, batch=["link set lo up"])
        self._configure(host)

    def _configure(self, host: Host) -> None:
        """Address, route and neighbours of ``host``'s link, then plug it into the bridge."""
        prefix = self.subnet.prefixlen
        ip(namespace=host.namespace, batch=[
            f"addr add {host.address}/{prefix} dev {host.interface}",
            f"link set {host.interface} up",
            f"route add table local {self.subnet} dev {host.interface}",
            *(f"neigh replace {peer.address} lladdr {peer.mac} dev {host.interface} "
              "nud permanent" for peer in self.hosts.values()),
        ])
        for peer in self.hosts.values():
            peer.point(host, host.mac)
        ip("link", "set", host.port_name, "master", BRIDGE, "up", namespace=self.switch)

    def partition(self, side: Iterable[Host], other: Iterable[Host]) -> None:
        """Cut every host of ``side`` from every host of ``other`` (both ways, silently); each
        keeps reaching the rest. ``heal()`` ends it."""
        others = list(other)
        for host in side:
            for peer in others:
                host.point(peer, NOWHERE_MAC)
                peer.point(host, NOWHERE_MAC)
                self.partitions.add((host.name, peer.name))

    def heal(self) -> None:
        """End every partition and plug every cut host back in."""
        for name, peer_name in sorted(self.partitions):
            host, peer = self.hosts[name], self.hosts[peer_name]
            host.point(peer, peer.mac)
            peer.point(host, host.mac)
        self.partitions.clear()
        for host in self.hosts.values():
            host.heal()

    def leftovers(self) -> list[str]:
        """This network's namespaces and root-namespace links that still exist."""
        found = [name for name in namespaces() if name.startswith(f"{self.run_id}-")]
        return found + [link["ifname"] for link in links() if link["ifname"] == self.uplink]

    def close(self) -> list[int]:
        """Remove every namespace and link of this network. Programs should be stopped first:
        any process still inside a host is killed, and its pid returned (a leak to report)."""
        killed: list[int] = []
        errors: list[str] = []
        hosts = [host for host in self.hosts.values() if host.namespace]
        for host in hosts:
            killed += _kill_inside(host.namespace)
        steps = [("link", "del", self.uplink)] if self.local else []
        steps += [("-n", self.switch, "link", "del", host.port_name) for host in hosts]
        steps += [("netns", "del", host.namespace) for host in hosts]
        steps += [("netns", "del", self.switch)]
        for step in steps:
            try:
                ip(*step)
            except NetworkError as error:
                errors.append(str(error))
        self.hosts.clear()
        self.local = None
        leftovers = self.leftovers()
        if leftovers:
            raise NetworkError(f"left behind: {leftovers}; {errors}")
        return killed
