"""What went wrong in one attempt: each failure mapped to the error to raise and its kind.

The kind decides the rest: whether the attempt is retried (:data:`RETRYABLE`),
whether it counts against the circuit breaker (:data:`BREAKER_FAILURES`), and the
counter it adds to (its value, as ``/metrics`` names it).

=================================  ==================  ==============================
what the attempt met               kind                error
=================================  ==================  ==============================
429                                ``THROTTLED``       :class:`UpstreamUnavailable`
5xx, an error event in a stream    ``SERVER``          :class:`UpstreamUnavailable`
attempt deadline, httpx timeout    ``TIMEOUT``         :class:`UpstreamUnavailable`
connection refused, reset, …       ``NETWORK``         :class:`UpstreamUnavailable`
other 4xx                          ``REJECTED``        :class:`UpstreamRejected`
malformed 2xx                      ``PROTOCOL``        :class:`UpstreamProtocolError`
=================================  ==================  ==============================
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NoReturn

import httpx
import trio

from agent_trio._errors import (
    CircuitOpen,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from agent_trio.upstream._http import parse_retry_after, upstream_message

__all__ = [
    "BREAKER_FAILURES",
    "RETRYABLE",
    "AttemptError",
    "FailureKind",
    "as_attempt_error",
    "raise_for_status",
    "reraise_mapped",
]


class FailureKind(enum.Enum):
    """The kinds of failed attempt; each value names the counter it adds to."""

    THROTTLED = "throttled"
    SERVER = "server_errors"
    TIMEOUT = "timeouts"
    NETWORK = "network_errors"
    REJECTED = "rejected"
    PROTOCOL = "protocol_errors"


class AttemptError(Exception):
    """One failed attempt: the error to raise, and what kind of failure it was."""

    def __init__(self, error: UpstreamError, kind: FailureKind) -> None:
        super().__init__(str(error))
        self.error = error
        self.kind = kind


RETRYABLE = frozenset(
    {FailureKind.THROTTLED, FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.NETWORK}
)
BREAKER_FAILURES = frozenset(
    {FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.NETWORK, FailureKind.PROTOCOL}
)


def raise_for_status(
    response: httpx.Response, name: str, *, wall_clock: Callable[[], float]
) -> None:
    """Raise the :class:`AttemptError` of a non-2xx answer from upstream ``name``.

    ``wall_clock`` reads a ``Retry-After`` given as an HTTP date.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    message = upstream_message(response)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=wall_clock())
        raise AttemptError(
            UpstreamUnavailable(
                f"{name} upstream is rate limiting us (429): {message}",
                upstream=name,
                status_code=429,
                retry_after=retry_after,
            ),
            FailureKind.THROTTLED,
        )
    if status >= 500:
        raise AttemptError(
            UpstreamUnavailable(
                f"{name} upstream failed with HTTP {status}: {message}",
                upstream=name,
                status_code=status,
            ),
            FailureKind.SERVER,
        )
    raise AttemptError(
        UpstreamRejected(
            f"{name} upstream rejected the request with HTTP {status}: {message}",
            upstream=name,
            status_code=status,
        ),
        FailureKind.REJECTED,
    )


def as_attempt_error(exc: BaseException, name: str, attempt_timeout: float) -> BaseException:
    """Map what one attempt raised to an :class:`AttemptError`; leave the rest alone."""
    if isinstance(exc, AttemptError):
        return exc
    if isinstance(exc, (trio.TooSlowError, httpx.TimeoutException)):
        return AttemptError(
            UpstreamUnavailable(
                f"{name} upstream did not answer within {attempt_timeout:g} s "
                f"({type(exc).__name__})",
                upstream=name,
            ),
            FailureKind.TIMEOUT,
        )
    if isinstance(exc, httpx.TransportError):
        return AttemptError(
            UpstreamUnavailable(
                f"{name} upstream unreachable or connection broken: {type(exc).__name__}: {exc}",
                upstream=name,
            ),
            FailureKind.NETWORK,
        )
    if isinstance(exc, UpstreamProtocolError):
        return AttemptError(exc, FailureKind.PROTOCOL)
    if isinstance(exc, UpstreamUnavailable) and not isinstance(exc, CircuitOpen):
        return AttemptError(exc, FailureKind.SERVER)  # e.g. an error event inside a 200 stream
    return exc


def reraise_mapped(exc: BaseException, name: str, attempt_timeout: float) -> NoReturn:
    """Raise ``exc`` as :func:`as_attempt_error` maps it, the original as its cause."""
    mapped = as_attempt_error(exc, name, attempt_timeout)
    if mapped is exc:
        raise exc
    raise mapped from exc
