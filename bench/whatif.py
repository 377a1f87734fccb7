"""What-if: the proposed fixes, patched into the benchmark's own process to size their gain.

These patches exist only here, to put a number on each fix proposed in
``docs/performance.md`` before anyone changes product code or Bumble. Nothing in
``simulator/`` or ``harness/`` uses them. Each one stands in for a fix:

* ``lazy-hci-log``: Bumble's host and controller log every HCI packet with an f-string
  (``logger.debug(f'... {packet}')``), so each packet is formatted field by field, in colour,
  even with debug logging off. Patched: an HCI packet's ``format()`` returns its class name and
  ``color`` returns its text, which is what lazy ``%s`` logging would cost. (Fix: upstream,
  ``logger.debug('%s: %s', ..., packet)`` at ``bumble/host.py`` ``send_hci_packet`` and
  ``on_hci_packet``, ``bumble/controller.py`` the same two.)
* ``indexed-link``: ``LocalLink.find_le_controller`` scans every controller's connections for
  every ACL packet sent: O(controllers) per packet, O(N²) for a fleet. Patched: a dict from
  address to controller, rebuilt when a controller joins or changes address.
* ``libyaml``: the fixtures are parsed by PyYAML's pure-Python ``safe_load`` (the card
  catalogue twice per world). Patched: ``yaml.safe_load`` uses ``CSafeLoader`` (libyaml, in
  the PyYAML wheel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import yaml
from bumble import controller as bumble_controller
from bumble import hci
from bumble import host as bumble_host
from bumble.link import LocalLink

FIXES = ("lazy-hci-log", "indexed-link", "libyaml")


def _plain(text: str, *_args: Any, **_kwargs: Any) -> str:
    return text


@contextlib.contextmanager
def _patched(target: object, name: str, value: object) -> Iterator[None]:
    missing = object()
    saved = target.__dict__.get(name, missing) if hasattr(target, "__dict__") else missing
    setattr(target, name, value)
    try:
        yield
    finally:
        if saved is missing:
            delattr(target, name)
        else:
            setattr(target, name, saved)


def _indexed_find(original: Callable[[LocalLink, hci.Address], Any]) -> Callable[..., Any]:
    def find_le_controller(self: LocalLink, address: hci.Address) -> Any:
        index: dict[hci.Address, Any] | None = self.__dict__.get("_whatif_index")
        if index is None or self.__dict__.get("_whatif_count") != len(self.controllers):
            index = {}
            for c in self.controllers:
                index[c.public_address] = c
                index[c.random_address] = c
            self.__dict__["_whatif_index"] = index
            self.__dict__["_whatif_count"] = len(self.controllers)
        found = index.get(address)
        if found is not None and address in (found.random_address, found.public_address):
            return found
        return original(self, address)

    return find_le_controller


def _address_changed(self: LocalLink, _controller: object) -> None:
    self.__dict__.pop("_whatif_index", None)


@contextlib.contextmanager
def applied(fixes: tuple[str, ...] = FIXES) -> Iterator[None]:
    """Apply ``fixes`` (names from :data:`FIXES`) for the duration of the block."""
    unknown = set(fixes) - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fixes {sorted(unknown)}; known: {', '.join(FIXES)}")
    with contextlib.ExitStack() as stack:
        if "lazy-hci-log" in fixes:
            stack.enter_context(
                _patched(hci.HCI_Packet, "__format__", lambda self, _spec: type(self).__name__)
            )
            stack.enter_context(_patched(bumble_host, "color", _plain))
            stack.enter_context(_patched(bumble_controller, "color", _plain))
        if "indexed-link" in fixes:
            original = LocalLink.find_le_controller
            stack.enter_context(_patched(LocalLink, "find_le_controller", _indexed_find(original)))
            stack.enter_context(_patched(LocalLink, "on_address_changed", _address_changed))
        if "libyaml" in fixes and getattr(yaml, "__with_libyaml__", False):

            def safe_load(stream: Any) -> Any:
                return yaml.load(stream, Loader=yaml.CSafeLoader)

            stack.enter_context(_patched(yaml, "safe_load", safe_load))
        yield
