"""Serving the explorer on a local port: checks first (Panel installed, port free), then the server.

Both checks run before any sampling, so a wrong port or a missing extra costs a second, not a sweep.
Panel is imported only here and in :mod:`pplevelset.explore.app`, so the rest of the command line
never pays for it.
"""

from __future__ import annotations

import errno
import socket

from pplevelset.errors import UserInputError

INSTALL_HINT = "pip install 'pplevelset[explore]'"
OPEN_ADDRESSES = ("0.0.0.0", "::", "")


def require_panel() -> None:
    """Panel, or one line saying how to get it."""
    try:
        import panel  # noqa: F401
    except ImportError:
        raise UserInputError(f"pplevelset explore needs Panel, which is not installed: {INSTALL_HINT}") from None


def check_port(address: str, port: int) -> None:
    """Fail now, in one line, if ``address:port`` cannot be listened on (in use, or not this machine's)."""
    if not 0 < port < 65536:
        raise UserInputError(f"--port {port} is not a port number (1-65535)")
    try:
        infos = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserInputError(f"--address {address!r} is not an address of this machine: {exc.strerror}") from None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no clash
        try:
            probe.bind(where)
        except OSError as exc:
            raise UserInputError(_port_message(address, port, exc)) from None


def _port_message(address: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {address} is in use; choose another with --port"
    return f"cannot listen on {address}:{port}: {exc.strerror or exc}"


def serve(answers, address: str, port: int, title: str | None = None) -> None:
    """Serve one :class:`~pplevelset.explore.app.Explorer` per browser session until Ctrl-C."""
    import panel as pn

    from pplevelset.explore.app import Explorer

    origins = [f"{host}:{port}" for host in ("localhost", "127.0.0.1", address)]
    if address in OPEN_ADDRESSES:
        origins = ["*"]  # listening everywhere: the user chose to be reachable from other machines
    title = title or f"pplevelset explore {answers.world.name}"
    print(
        f"serving http://{'127.0.0.1' if address in OPEN_ADDRESSES else address}:{port}/ (Ctrl-C to stop)", flush=True
    )
    try:
        pn.serve(
            lambda: Explorer(answers).view(),
            port=port,
            address=address,
            websocket_origin=origins,
            show=False,
            title=title,
            threaded=False,
            verbose=False,
        )
    except OSError as exc:  # taken meanwhile, while the sweep ran
        raise UserInputError(_port_message(address, port, exc)) from None
