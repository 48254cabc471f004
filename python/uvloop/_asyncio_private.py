"""Every private name of asyncio this package uses, looked up once, when uvloop is imported.

asyncio's private names change between Python versions without notice. Here each is looked up
at import time, so that a Python that lacks one fails `import uvloop` with a message that names
it, instead of an AttributeError deep inside a callback. Each entry records the Pythons in which
it was checked: "3.9-3.13" were run here (the whole test suite); 3.14 and 3.15 were checked by
reading sources, since no such interpreter can be installed on the project's machines: 3.14's
`Lib/asyncio` as released in 3.14.2 to 3.14.6 (the 3.14.0 files themselves were not reachable),
and 3.15 through a 3.15 development snapshot of `Lib/asyncio` and typeshed's stubs, which mark
each name with the versions that have it (no 3.15.0 source was reachable).
`PRIVATE_NAMES` lists them all (see tests/test_asyncio_private.py and the README).

Where asyncio renamed a name, the entry lists the spellings to try, newest first.
"""

import importlib
import sys

# Pythons in which the names below were checked, and how.
RUN_HERE = "3.9-3.13"
READ_IN_SOURCES = "3.14, 3.15"

# (dotted name found, Pythons it was checked in, what it is used for), in lookup order.
PRIVATE_NAMES: list[tuple[str, str, str]] = []


class MissingAsyncioName(ImportError):
    """A private asyncio name this package needs is not in the running Python."""


def _lookup(module_name, spellings, checked, purpose, required=True):
    module = importlib.import_module(module_name)
    for spelling in spellings:
        if hasattr(module, spelling):
            PRIVATE_NAMES.append((f"{module_name}.{spelling}", checked, purpose))
            return getattr(module, spelling)
    if not required:
        return None
    tried = " or ".join(f"{module_name}.{s}" for s in spellings)
    raise MissingAsyncioName(
        f"uvloop needs asyncio's private {tried} ({purpose}), which Python "
        f"{sys.version.split()[0]} does not have; uvloop was checked against Python "
        f"{RUN_HERE} (run) and {READ_IN_SOURCES} (sources)"
    )


def _methods(sources, names, checked, purpose, since=(3, 9)):
    """{name: function} from the first class of `sources` that defines each name; nothing on a
    Python older than `since` (the version that added them)."""
    found = {}
    if sys.version_info < since:
        return found
    for name in names:
        for source in sources:
            if name in vars(source):
                found[name] = vars(source)[name]
                PRIVATE_NAMES.append((f"{source.__module__}.{source.__name__}.{name}", checked, purpose))
                break
        else:
            classes = ", ".join(f"{s.__module__}.{s.__name__}" for s in sources)
            raise MissingAsyncioName(
                f"uvloop needs the method {name} of asyncio's {classes} ({purpose}), which "
                f"Python {sys.version.split()[0]} does not have; uvloop was checked against "
                f"Python {RUN_HERE} (run) and {READ_IN_SOURCES} (sources)"
            )
    return found


_ALL = "3.9-3.15"

# Running the loop.
set_running_loop = _lookup(
    "asyncio.events", ("_set_running_loop",), _ALL, "run_forever marks the loop as running"
)
get_running_loop = _lookup(
    "asyncio.events", ("_get_running_loop",), _ALL, "uvloop.run refuses to nest"
)
is_debug_mode = _lookup(
    "asyncio.coroutines", ("_is_debug_mode",), _ALL, "a new loop's debug flag (PYTHONASYNCIODEBUG)"
)
# 3.14 deprecated asyncio.iscoroutinefunction (every call warns); its own code calls the
# private, silent one.
iscoroutinefunction = _lookup(
    "asyncio.coroutines",
    ("_iscoroutinefunction", "iscoroutinefunction"),
    "3.9-3.15 (_iscoroutinefunction from 3.14)",
    "add_signal_handler refuses coroutine functions",
)
cancel_all_tasks = _lookup(
    "asyncio.runners", ("_cancel_all_tasks",), _ALL, "uvloop.run on 3.9/3.10 (no asyncio.Runner)"
)
set_result_unless_cancelled = _lookup(
    "asyncio.futures",
    ("_set_result_unless_cancelled",),
    _ALL,
    "completes the waiter of a new transport as asyncio does",
)

# Policies: the base class became private in 3.14, and the policy system is to go in 3.16
# (both None then: uvloop.EventLoopPolicy and install() say so when used).
BaseDefaultEventLoopPolicy = _lookup(
    "asyncio.events",
    ("_BaseDefaultEventLoopPolicy", "BaseDefaultEventLoopPolicy"),
    "3.9-3.15 (_BaseDefaultEventLoopPolicy from 3.14)",
    "base class of uvloop.EventLoopPolicy",
    required=False,
)
# 3.14 deprecated set_event_loop_policy (every call warns); install() warns itself.
set_event_loop_policy = _lookup(
    "asyncio.events",
    ("_set_event_loop_policy", "set_event_loop_policy"),
    "3.9-3.15 (_set_event_loop_policy from 3.14)",
    "uvloop.install() and python -m uvloop",
    required=False,
)

# Messages and log records exactly as asyncio's.
extract_stack = _lookup(
    "asyncio.format_helpers", ("extract_stack",), _ALL, "debug-mode source tracebacks"
)
format_callback_source = _lookup(
    "asyncio.format_helpers",
    ("_format_callback_source",),
    "3.9-3.15 (debug= from 3.13)",
    "handle reprs and error reports",
)
format_handle = _lookup(
    "asyncio.base_events", ("_format_handle",), _ALL, "the slow-callback warning"
)
check_ssl_socket = _lookup(
    "asyncio.base_events", ("_check_ssl_socket",), _ALL, "sock_* refuse SSL sockets"
)

# Classes whose behaviour the loop's objects keep (each Python's own).
Server = _lookup("asyncio.base_events", ("Server",), _ALL, "base class of the loop's Server")
_methods(
    (Server,), ("_start_serving",), _ALL, "the loop's Server starts listening as asyncio's does"
)
SSLProtocol = _lookup(
    "asyncio.sslproto", ("SSLProtocol",), _ALL, "TLS over the native socket transports"
)
TransportSocket = _lookup(
    "asyncio.trsock", ("TransportSocket",), _ALL, "get_extra_info('socket') and error contexts"
)
FlowControlMixin = _lookup(
    "asyncio.transports", ("_FlowControlMixin",), _ALL, "base of the native transports' classes"
)
SendfileMode = _lookup(
    "asyncio.constants", ("_SendfileMode",), _ALL, "transports declare native sendfile support"
)
SelectorDatagramTransport = _lookup(
    "asyncio.selector_events",
    ("_SelectorDatagramTransport",),
    _ALL,
    "AF_UNIX datagram endpoints (libuv cannot carry them)",
)
BaseSubprocessTransport = _lookup(
    "asyncio.base_subprocess",
    ("BaseSubprocessTransport",),
    _ALL,
    "base of the subprocess transport over libuv's children",
)
UnixSubprocessTransport = _lookup(
    "asyncio.unix_events",
    ("_UnixSubprocessTransport",),
    _ALL,
    "children Popen arguments that libuv cannot express (preexec_fn, umask, ...)",
)
BaseEventLoop = _lookup(
    "asyncio.base_events", ("BaseEventLoop",), _ALL, "source of the methods below"
)
BaseSelectorEventLoop = _lookup(
    "asyncio.selector_events", ("BaseSelectorEventLoop",), _ALL, "source of the methods below"
)
UnixSelectorEventLoop = _lookup(
    "asyncio.unix_events", ("_UnixSelectorEventLoop",), _ALL, "source of the methods below"
)

# asyncio's own code for what runs once per loop or per run: it needs only attributes that
# uvloop.Loop provides, and keeps behaviour and messages exactly each Python's.
PER_RUN_METHODS = _methods(
    (BaseEventLoop,),
    (
        "__repr__", "__del__", "run_until_complete", "_check_running", "_check_callback",
        "_check_thread", "_check_default_executor", "set_debug",
        "_set_coroutine_origin_tracking", "_asyncgen_firstiter_hook",
        "_asyncgen_finalizer_hook", "shutdown_asyncgens", "_do_shutdown", "run_in_executor",
        "set_default_executor", "get_exception_handler", "set_exception_handler",
        "default_exception_handler", "call_exception_handler",
    ),
    _ALL,
    "per-run parts of uvloop.Loop",
)

# asyncio's networking code for what runs once per connection or per call; it reaches the loop
# only through _add_reader and friends, _transports, _selector and the _make_*_transport
# factories, which are native. The most derived class that defines a name wins, as in the MRO
# of asyncio's unix loop. (_sock_sendfile_native_impl and _sock_sendfile_update_filepos changed
# their shared signature in 3.14.6: they are always taken together.)
NETWORKING_METHODS = _methods(
    (UnixSelectorEventLoop, BaseSelectorEventLoop, BaseEventLoop),
    (
        # servers, connections, TLS, datagrams
        "create_connection", "_connect_sock", "_create_connection_transport",
        "_ensure_resolved", "_getaddrinfo_debug", "_create_server_getaddrinfo",
        "connect_accepted_socket", "start_tls", "create_unix_connection",
        "create_datagram_endpoint",
        # pipes and processes
        "subprocess_exec", "subprocess_shell", "_log_subprocess", "connect_read_pipe",
        "connect_write_pipe",
        # fd watchers: the public methods check that no transport owns the fd
        "add_reader", "remove_reader", "add_writer", "remove_writer",
        # sock_* and sendfile
        "sock_connect", "_sock_connect",
        "_sock_connect_cb", "sock_accept", "_sock_accept", "_sock_read_done",
        "_sock_write_done", "sendfile", "_sendfile_fallback", "sock_sendfile",
        "_sock_sendfile_native", "_sock_sendfile_native_impl",
        "_sock_sendfile_update_filepos", "_sock_sendfile_fallback", "_check_sendfile_params",
        "_sock_add_cancellation_callback",
    ),
    _ALL,
    "networking of uvloop.Loop that runs once per connection or call",
)
# The datagram sock_* methods asyncio added in 3.11.
NETWORKING_METHODS.update(
    _methods(
        (UnixSelectorEventLoop, BaseSelectorEventLoop, BaseEventLoop),
        (
            "sock_recvfrom", "_sock_recvfrom", "sock_recvfrom_into", "_sock_recvfrom_into",
            "sock_sendto", "_sock_sendto",
        ),
        "3.11-3.15",
        "datagram sock_* methods of uvloop.Loop",
        since=(3, 11),
    )
)
