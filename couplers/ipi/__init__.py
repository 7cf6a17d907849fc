"""i-PI socket protocol, both roles: a driver (client) that serves a force engine to
an i-PI server, and a server that lets ionscale MD use an external force engine."""
from .protocol import IPIProtocolError, IPIConnection, unix_socket_path
from .client import IPIDriver, serve_calculator
from .server import IPIServer, IPIServerCalculator

__all__ = ["IPIProtocolError", "IPIConnection", "unix_socket_path", "IPIDriver", "serve_calculator",
           "IPIServer", "IPIServerCalculator"]
