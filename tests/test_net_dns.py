"""loop.getaddrinfo and loop.getnameinfo.

The specification is asyncio's base_events.py (`getaddrinfo`, `_getaddrinfo_debug`,
`getnameinfo`), which run socket.getaddrinfo / socket.getnameinfo in the default executor: the
results, and the exceptions, are exactly the socket module's. The tests compare against the
socket module called directly.

There is no usable DNS on the test machines: every input is numeric, "localhost" (from
/etc/hosts), a service from /etc/services, or fails before any query is sent
(AI_NUMERICHOST, bad arguments).
"""

import asyncio
import socket

import pytest

from conftest import run
from net_protocols import needs_ipv6

NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


def _error(exc):
    # A resolver error's message is gai_strerror(errno): compared too. Other messages (bad
    # argument types) may be worded differently; their type is what matters.
    message = str(exc) if isinstance(exc, socket.gaierror) else None
    return ("error", type(exc), getattr(exc, "errno", None), message)


def sync_outcome(func, *args, **kwargs):
    """("ok", result) or ("error", exception type, errno, gaierror message) of a direct call."""
    try:
        return ("ok", func(*args, **kwargs))
    except Exception as exc:  # compared against the loop's outcome
        return _error(exc)


async def async_outcome(coro_func, *args, **kwargs):
    try:
        return ("ok", await coro_func(*args, **kwargs))
    except Exception as exc:
        return _error(exc)


def check_result_types(infos):
    assert isinstance(infos, list)
    for family, type_, proto, canonname, sockaddr in infos:
        assert isinstance(family, socket.AddressFamily)
        assert isinstance(type_, socket.SocketKind)
        assert isinstance(proto, int)
        assert isinstance(canonname, str)
        assert isinstance(sockaddr, tuple)


ADDRINFO_CASES = [
    pytest.param(("127.0.0.1", 80), {}, id="ipv4-int-port"),
    pytest.param(("127.0.0.1", "80"), {}, id="ipv4-str-port"),
    pytest.param(("127.0.0.1", b"80"), {}, id="ipv4-bytes-port"),
    pytest.param((b"127.0.0.1", 80), {}, id="bytes-host"),
    pytest.param(("127.0.0.1", "http"), {}, id="service-name"),
    pytest.param(("127.0.0.1", None), {}, id="no-port"),
    pytest.param(("127.0.0.1", 0), {}, id="port-zero"),
    pytest.param(("127.0.0.1", 65536), {}, id="port-wraps"),
    pytest.param(("localhost", 8080), {}, id="localhost"),
    pytest.param(("localhost", 80), {"flags": socket.AI_CANONNAME}, id="canonname"),
    pytest.param((None, 80), {}, id="no-host"),
    pytest.param((None, 80), {"flags": socket.AI_PASSIVE}, id="passive"),
    pytest.param(
        (None, 0), {"flags": socket.AI_PASSIVE, "family": socket.AF_INET}, id="passive-v4"
    ),
    pytest.param(("127.0.0.1", 80), {"flags": NUMERIC}, id="numeric-flags"),
    pytest.param(("127.0.0.1", 80), {"type": socket.SOCK_STREAM}, id="stream"),
    pytest.param(("127.0.0.1", 53), {"type": socket.SOCK_DGRAM}, id="dgram"),
    pytest.param(("127.0.0.1", 80), {"proto": socket.IPPROTO_TCP}, id="proto-tcp"),
    pytest.param(("127.0.0.1", 80), {"family": socket.AF_INET}, id="family-v4"),
    pytest.param(
        ("127.0.0.1", 80),
        {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP,
         "flags": socket.AI_NUMERICHOST},
        id="all-filters",
    ),
]


@pytest.mark.parametrize("args, kwargs", ADDRINFO_CASES)
def test_getaddrinfo_matches_socket(loop, args, kwargs):
    """loop.getaddrinfo returns what socket.getaddrinfo returns, enums included (or fails
    the same way, e.g. on a machine without /etc/services)."""
    expected = sync_outcome(socket.getaddrinfo, *args, **kwargs)
    got = run(loop, async_outcome(loop.getaddrinfo, *args, **kwargs))
    assert got == expected
    if got[0] == "ok":
        check_result_types(got[1])


@needs_ipv6
@pytest.mark.parametrize(
    "args, kwargs",
    [
        pytest.param(("::1", 443), {}, id="ipv6"),
        pytest.param(("::1", "https"), {"type": socket.SOCK_STREAM}, id="ipv6-service"),
        pytest.param(("::1", 80), {"family": socket.AF_INET6, "flags": NUMERIC}, id="ipv6-numeric"),
        pytest.param(
            (None, 0), {"flags": socket.AI_PASSIVE, "family": socket.AF_INET6}, id="passive-v6"
        ),
    ],
)
def test_getaddrinfo_ipv6_matches_socket(loop, args, kwargs):
    """IPv6 literals resolve to 4-tuple sockaddrs, as with socket.getaddrinfo."""
    expected = sync_outcome(socket.getaddrinfo, *args, **kwargs)
    got = run(loop, async_outcome(loop.getaddrinfo, *args, **kwargs))
    assert got == expected
    if got[0] == "ok":
        check_result_types(got[1])
        assert all(len(info[4]) == 4 for info in got[1])


ADDRINFO_ERRORS = [
    pytest.param(("nonexistent.invalid", 80), {"flags": socket.AI_NUMERICHOST}, id="numerichost"),
    pytest.param((None, None), {}, id="nothing"),
    pytest.param(("127.0.0.1", "nosuchservice"), {}, id="unknown-service"),
    pytest.param(("127.0.0.1", "http"), {"type": socket.SOCK_DGRAM}, id="service-wrong-type"),
    pytest.param(("127.0.0.1", "http"), {"flags": socket.AI_NUMERICSERV}, id="numericserv"),
    pytest.param(("127.0.0.1", -1), {}, id="negative-port"),
    pytest.param(("127.0.0.1", 80), {"family": 12345}, id="bad-family"),
    pytest.param(("127.0.0.1", 80), {"type": 12345}, id="bad-type"),
    pytest.param(("127.0.0.1", 80), {"proto": 12345}, id="bad-proto"),
    pytest.param(("127.0.0.1", 80), {"flags": -1}, id="bad-flags"),
    pytest.param(("::1", 80), {"family": socket.AF_INET}, id="v6-literal-as-v4"),
    pytest.param(
        ("127.0.0.1", 80), {"family": socket.AF_INET6, "flags": NUMERIC}, id="v4-literal-as-v6"
    ),
    pytest.param((123, 80), {}, id="int-host"),
    pytest.param(("127.0.0.1", 1.5), {}, id="float-port"),
    pytest.param(("127.0.0.1", [80]), {}, id="list-port"),
    pytest.param(("127.0.0.1", 2 ** 70), {}, id="huge-port"),
    pytest.param(("127.0.0.1", 80), {"family": "x"}, id="str-family"),
    pytest.param(("a" * 300, 80), {"flags": socket.AI_NUMERICHOST}, id="idna-label-too-long"),
]


@pytest.mark.parametrize("args, kwargs", ADDRINFO_ERRORS)
def test_getaddrinfo_errors_match_socket(loop, args, kwargs):
    """Failures raise the socket module's exception: same type and errno (and message, for
    resolver errors)."""
    expected = sync_outcome(socket.getaddrinfo, *args, **kwargs)
    assert expected[0] == "error"
    got = run(loop, async_outcome(loop.getaddrinfo, *args, **kwargs))
    assert got == expected


def test_getaddrinfo_gaierror_is_oserror(loop):
    """A resolution failure is a socket.gaierror (an OSError) with an EAI_* errno."""

    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("nonexistent.invalid", 80, flags=socket.AI_NUMERICHOST)
        assert isinstance(info.value, OSError)
        assert info.value.errno == socket.EAI_NONAME

    run(loop, main())


def test_getaddrinfo_keyword_only_filters(loop):
    """family, type, proto and flags are keyword-only."""

    async def main():
        with pytest.raises(TypeError):
            await loop.getaddrinfo("127.0.0.1", 80, socket.AF_INET)

    run(loop, main())


def test_getaddrinfo_debug_mode(loop):
    """In debug mode the results are the same (asyncio only adds logging)."""

    async def main():
        loop.set_debug(True)
        return await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)

    assert run(loop, main()) == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)


def test_getaddrinfo_concurrent(loop):
    """Many lookups at once all complete with the right answers."""

    ports = list(range(1000, 1100))

    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("127.0.0.1", p, type=socket.SOCK_STREAM) for p in ports)
        )

    results = run(loop, main())
    assert results == [socket.getaddrinfo("127.0.0.1", p, type=socket.SOCK_STREAM) for p in ports]


def test_getaddrinfo_is_a_coroutine_or_future(loop):
    """loop.getaddrinfo returns an awaitable; cancelling it before it runs raises
    CancelledError."""

    async def main():
        aw = loop.getaddrinfo("127.0.0.1", 80)
        task = asyncio.ensure_future(aw)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


NAMEINFO_CASES = [
    pytest.param(("127.0.0.1", 80), 0, id="plain"),
    pytest.param(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV, id="numeric"),
    pytest.param(("127.0.0.1", 80), socket.NI_NUMERICSERV, id="numeric-serv"),
    pytest.param(("127.0.0.1", 53), socket.NI_DGRAM, id="dgram"),
    pytest.param(("127.0.0.1", 80), socket.NI_NAMEREQD, id="namereqd"),
    pytest.param(("127.0.0.1", 54321), 0, id="no-service-name"),
]


@pytest.mark.parametrize("sockaddr, flags", NAMEINFO_CASES)
def test_getnameinfo_matches_socket(loop, sockaddr, flags):
    """loop.getnameinfo returns what socket.getnameinfo returns (or fails the same way)."""
    expected = sync_outcome(socket.getnameinfo, sockaddr, flags)
    got = run(loop, async_outcome(loop.getnameinfo, sockaddr, flags))
    assert got == expected


@needs_ipv6
@pytest.mark.parametrize(
    "sockaddr, flags",
    [
        pytest.param(("::1", 80, 0, 0), 0, id="4-tuple"),
        pytest.param(("::1", 80), socket.NI_NUMERICHOST, id="2-tuple-numeric"),
    ],
)
def test_getnameinfo_ipv6_matches_socket(loop, sockaddr, flags):
    """IPv6 sockaddrs (2- or 4-tuples) give socket.getnameinfo's answer."""
    expected = sync_outcome(socket.getnameinfo, sockaddr, flags)
    got = run(loop, async_outcome(loop.getnameinfo, sockaddr, flags))
    assert got == expected


def test_getnameinfo_default_flags(loop):
    """flags defaults to 0."""

    async def main():
        return await loop.getnameinfo(("127.0.0.1", 80))

    assert run(loop, main()) == socket.getnameinfo(("127.0.0.1", 80), 0)


NAMEINFO_ERRORS = [
    pytest.param(("localhost", 80), 0, id="hostname-not-numeric"),
    pytest.param(("127.0.0.1",), 0, id="short-tuple"),
    pytest.param(("127.0.0.1", 80, 0, 0, 0), 0, id="long-tuple"),
    pytest.param(["127.0.0.1", 80], 0, id="list"),
    pytest.param(("127.0.0.1", "80"), 0, id="str-port"),
    pytest.param(("127.0.0.1", 80), "x", id="str-flags"),
]


@pytest.mark.parametrize("sockaddr, flags", NAMEINFO_ERRORS)
def test_getnameinfo_errors_match_socket(loop, sockaddr, flags):
    """Failures raise the socket module's exception: same type and errno (and message, for
    resolver errors)."""
    expected = sync_outcome(socket.getnameinfo, sockaddr, flags)
    assert expected[0] == "error"
    got = run(loop, async_outcome(loop.getnameinfo, sockaddr, flags))
    assert got == expected
