"""Faults injected into the mock backend: errors, slow answers, lost answers, a closed port.

A :class:`FaultPlan` hangs on every :class:`~harness.backend.server.BackendServer` as
``server.faults``. Tests, the World and scenario scripts arm it; the server consults it on every
request::

    server.faults.fail("POST /api/payments/*/authorisation", status=503)  # nothing applied
    server.faults.fail_after("create_payment")  # applied, then the answer is lost
    server.faults.fail_after("create_payment", status=None)  # applied, then the link is cut
    server.faults.delay("GET /api/invoices/*", seconds=12, times=2)  # slow answers
    server.faults.refuse_connections()  # the port is closed: connection refused
    server.faults.accept_connections()  # back on the same port
    server.faults.clear()  # every fault disarmed, the port open again

**Routes.** A fault names the requests it strikes with a *route spec*, a string a YAML script
can hold:

- a route's name, the handler's name in :mod:`harness.backend.server`: ``create_payment``,
  ``authorise_payment``, ``record_result``, ``create_capture``, ``verify_capture``,
  ``record_capture_result``, ``create_token_payment``, ``get_invoice``, … (every name:
  :attr:`FaultPlan.route_names`);
- ``METHOD PATH``, where ``METHOD`` is ``GET``, ``POST``, ``PUT`` or ``*`` (any) and ``PATH``
  matches the request's path segment by segment: ``*`` or a ``{placeholder}`` is any one
  segment, anything else must be equal (``POST /api/invoices/F-2026-0003/payments`` strikes
  that invoice only). ``PATH`` alone means any method;
- ``*``: every request.

A spec that can strike no route of the server is refused at once with a :class:`ValueError`
that lists the known routes.

**When.** :meth:`FaultPlan.fail` and :meth:`FaultPlan.delay` strike *before* the request reaches
the store: a 503 means nothing happened. :meth:`FaultPlan.fail_after` strikes *after* the store
applied the request and its answer was recorded under its idempotency key: the answer is
lost, so a retry with the same key gets the stored answer (never a second payment). A status of
``None`` cuts the connection instead of answering (the client sees the server disconnect).

Each fault strikes ``times`` matching requests (``None``: until cleared), in the order faults
were armed; :attr:`Fault.hits` counts the requests it struck. Delays are loop time
(``asyncio.sleep``): on the World's virtual clock a 30-second slow answer costs no wall time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["fail", "fail_after", "delay"]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "*")
_PLACEHOLDER = re.compile(r"\{[^/{}]+\}")


@dataclass(frozen=True)
class Route:
    """One route of the server, as a fault can name it."""

    name: str  # the handler's name, e.g. "create_payment"
    method: str  # "GET", "POST", …
    template: str  # e.g. "/api/invoices/{number}/payments"

    def __str__(self) -> str:
        return f"{self.name} ({self.method} {self.template})"


@dataclass(frozen=True)
class RouteSpec:
    """A parsed route spec (see the module's docstring)."""

    text: str
    name: str | None = None
    method: str = "*"
    segments: tuple[str, ...] | None = None  # None: any path

    @classmethod
    def parse(cls, text: str) -> RouteSpec:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"route spec must be a non-empty string, not {text!r}")
        words = text.split()
        if words == ["*"]:
            return cls(text)
        if len(words) == 1 and not words[0].startswith("/"):
            return cls(text, name=words[0])
        if len(words) == 1:
            method, path = "*", words[0]
        elif len(words) == 2:
            method, path = words[0].upper(), words[1]
        else:
            raise ValueError(f"route spec {text!r}: expected a route name or 'METHOD /path'")
        if method not in METHODS:
            raise ValueError(f"route spec {text!r}: unknown method {method!r}")
        if not path.startswith("/"):
            raise ValueError(f"route spec {text!r}: the path must start with '/'")
        return cls(text, method=method, segments=_segments(path))

    def matches_route(self, route: Route) -> bool:
        """Whether some request of ``route`` can match this spec."""
        if self.name is not None:
            return route.name == self.name
        if self.method not in ("*", route.method):
            return False
        if self.segments is None:
            return True
        template = _segments(route.template)
        return len(template) == len(self.segments) and all(
            _wild(mine) or _wild(theirs) or mine == theirs
            for mine, theirs in zip(self.segments, template, strict=True)
        )

    def matches(self, method: str, path: str, route_name: str | None) -> bool:
        """Whether the request ``method path`` (served by ``route_name``) matches."""
        if self.name is not None:
            return route_name == self.name
        if self.method not in ("*", method):
            return False
        if self.segments is None:
            return True
        actual = _segments(path)
        return len(actual) == len(self.segments) and all(
            _wild(mine) or mine == theirs
            for mine, theirs in zip(self.segments, actual, strict=True)
        )


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/"))


def _wild(segment: str) -> bool:
    return segment == "*" or _PLACEHOLDER.fullmatch(segment) is not None


@dataclass
class Fault:
    """One armed fault. ``times`` left to strike (None: until cleared); ``hits`` so far."""

    kind: FaultKind
    route: RouteSpec
    times: int | None = 1
    status: int | None = 503  # fail, fail_after: the answer's status; None: connection cut
    seconds: float = 0.0  # delay
    hits: int = 0

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def describe(self) -> str:
        """What the request log says about a request this fault struck."""
        if self.kind == "delay":
            return f"injected delay of {self.seconds:g} s"
        when = "after the store applied it" if self.kind == "fail_after" else "before the store"
        if self.status is None:
            return f"injected: connection cut {when}"
        return f"injected {self.status} {when}"


@dataclass
class FaultPlan:
    """The faults armed on one backend server, and whether its port accepts connections.

    ``routes`` are the server's routes (for validation); ``on_listening`` is the server's hook
    that closes or reopens its port (set by the server). Methods return the :class:`Fault`
    they armed, whose ``hits`` a test may read.
    """

    routes: tuple[Route, ...] = ()
    faults: list[Fault] = field(default_factory=list)
    listening: bool = True
    on_listening: Callable[[bool], None] | None = None

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(route.name for route in self.routes)

    # -- arming ------------------------------------------------------------------------------

    def fail(self, route: str, status: int | None = 503, times: int | None = 1) -> Fault:
        """Answer ``status`` (default 503; ``None``: cut the connection) *before* the store
        sees the request: nothing happened, a retry is safe with or without a key."""
        return self._arm(Fault("fail", self._spec(route), _times(times), _status(status)))

    def fail_after(self, route: str, status: int | None = 503, times: int | None = 1) -> Fault:
        """Let the store apply the request, record its answer under the idempotency key, then
        lose the answer: answer ``status`` instead (default 503; ``None``: cut the
        connection). The "retried request" case: the retry must get the stored answer."""
        return self._arm(Fault("fail_after", self._spec(route), _times(times), _status(status)))

    def delay(self, route: str, seconds: float, times: int | None = 1) -> Fault:
        """Hold matching requests ``seconds`` of loop time before handling them (a slow
        backend): a client whose timeout is shorter gives up and may retry."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"delay: seconds must be a number >= 0, not {seconds!r}")
        fault = Fault("delay", self._spec(route), _times(times), None, float(seconds))
        return self._arm(fault)

    def refuse_connections(self) -> None:
        """Close the server's port: new connections are refused (the backend is down), open
        idle ones are closed. Requests already being handled finish."""
        self._set_listening(False)

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        self._set_listening(True)

    def clear(self) -> None:
        """Disarm every fault and accept connections again."""
        self.faults.clear()
        self.accept_connections()

    # -- consulted by the server ---------------------------------------------------------------

    def strike(
        self,
        kinds: Iterable[FaultKind],
        method: str,
        path: str,
        route_name: str | None,
        skip: Iterable[Fault] = (),
    ) -> Fault | None:
        """The first armed fault of one of ``kinds`` that matches the request, counted as a
        hit (and dropped once spent); None if no fault strikes it. ``skip``: faults that
        already struck this request (each fault strikes a request once)."""
        wanted = set(kinds)
        done = {id(fault) for fault in skip}
        for fault in self.faults:
            if id(fault) in done:
                continue
            if fault.kind in wanted and fault.route.matches(method, path, route_name):
                fault.hits += 1
                if fault.spent:
                    self.faults.remove(fault)
                return fault
        return None

    # -- internals -------------------------------------------------------------------------------

    def _spec(self, text: str) -> RouteSpec:
        spec = RouteSpec.parse(text)
        if self.routes and not any(spec.matches_route(route) for route in self.routes):
            known = "\n  ".join(str(route) for route in self.routes)
            raise ValueError(
                f"route spec {text!r} matches no route of the backend; known:\n  {known}"
            )
        return spec

    def _arm(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _set_listening(self, listening: bool) -> None:
        if self.listening == listening:
            return
        self.listening = listening
        if self.on_listening is not None:
            self.on_listening(listening)


def _times(times: int | None) -> int | None:
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be a whole number >= 1 (or None: always), not {times!r}")
    return times


def _status(status: int | None) -> int | None:
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
    ):
        raise ValueError(f"status must be an HTTP error status (400-599) or None, not {status!r}")
    return status
