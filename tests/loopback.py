"""A guard that fails any connection beyond loopback: for the test process and the app
processes the tests start."""

from __future__ import annotations

import ipaddress
import socket

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"test tried to reach {host}: tests may only use loopback")
    return _real_connect(self, address)


def install_loopback_guard() -> None:
    """From now on this process can only connect to loopback addresses."""
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
