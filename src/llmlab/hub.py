"""What the Hugging Face Hub client libraries raise, told apart without importing their internals.

huggingface_hub 1.x raised `httpx` errors; 2.x raises `httpx2` errors (a separate package with
the same class names), and `datasets` wraps some of them in a builtin `ConnectionError` and
lets others through. Catching one library's classes therefore misses the other's, so network
failures are recognised here, once, by what they are rather than by which package defined them.
"""

from __future__ import annotations

import socket

# Packages whose `TransportError` (connect/read/write failures, timeouts, proxy and protocol
# errors) means "the network failed", as opposed to an HTTP status the hub answered with.
_HTTP_CLIENTS = ("httpx", "httpx2")
# How far along __cause__/__context__ to look: wrappers nest a few levels, never dozens.
_MAX_CHAIN = 16


def _is_transport_error(err: BaseException) -> bool:
    return any(
        cls.__name__ == "TransportError" and cls.__module__.split(".")[0] in _HTTP_CLIENTS
        for cls in type(err).__mro__
    )


def _is_network_error_itself(err: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError

    # OfflineModeIsEnabled is a ConnectionError. LocalEntryNotFoundError: the hub could not be
    # asked and the file is not cached. gaierror (DNS) is an OSError, not a ConnectionError.
    if isinstance(err, ConnectionError | TimeoutError | socket.gaierror | LocalEntryNotFoundError):
        return True
    return _is_transport_error(err)


def network_error_in(err: BaseException) -> BaseException | None:
    """The network failure `err` is, was raised from, or was raised while handling; else None.

    Network failure: offline mode, DNS, refused or dropped connections, timeouts, a file not
    cached that the hub could not be asked for. An HTTP error status (404, 401, 500) is not one:
    the hub was reached and answered.

    The chain is followed through `__context__` too, including suppressed contexts
    (`raise ... from None`): `datasets` re-raises its own errors that way after a failed request,
    and an error raised while handling a network failure is that failure's consequence.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [err]
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_network_error_itself(current):
            return current
        pending.extend(e for e in (current.__context__, current.__cause__) if e is not None)
    return None


def is_network_error(err: BaseException) -> bool:
    """True if `err` is, or comes from, a network failure (see `network_error_in`)."""
    return network_error_in(err) is not None
