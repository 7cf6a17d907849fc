"""i-PI server role: ionscale MD sends positions to an external force engine (any i-PI
driver: ASE ``SocketClient``, CP2K, Quantum ESPRESSO, LAMMPS...) and reads back energy,
forces and virial. Binds to loopback (TCP) or a Unix socket; every wait has a timeout."""
from __future__ import annotations

import os
import socket

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .protocol import CLIENT_MESSAGES, IPIConnection, IPIProtocolError, unix_socket_path


class IPIServer:
    """``IPIServer(address, mode='unix'|'inet', port=0, host='127.0.0.1')``: listen now,
    accept lazily on the first ``calculate``; ``port=0`` picks a free port (``.port``)."""

    def __init__(self, address="ionscale", mode="unix", port=0, timeout=60.0, accept_timeout=60.0,
                 host="127.0.0.1"):
        self.mode, self.timeout, self.accept_timeout = mode, timeout, accept_timeout
        self.conn: IPIConnection | None = None
        self.path = None
        if mode == "unix":
            self.path = unix_socket_path(address)
            if os.path.exists(self.path):
                os.unlink(self.path)
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.path)
        elif mode == "inet":
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, int(port)))
        else:
            raise ValueError(f"i-PI mode must be 'unix' or 'inet', got {mode!r}")
        self.port = self.listener.getsockname()[1] if mode == "inet" else None
        self.listener.listen(1)
        self.listener.settimeout(accept_timeout)

    def accept(self):
        if self.conn is None:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                raise IPIProtocolError(f"i-PI server: no driver connected within {self.accept_timeout:g} s") from None
            self.conn = IPIConnection(sock, self.timeout, peer="driver")

    def _status(self) -> str:
        self.conn.send_header("STATUS")
        return self.conn.recv_header(CLIENT_MESSAGES[:3])

    def calculate(self, positions, cell):
        """Energy (eV), forces (eV/A) and virial (eV) of one configuration."""
        self.accept()
        msg = self._status()
        if msg == "NEEDINIT":
            self.conn.send_header("INIT")
            self.conn.send_array([0], np.int32)
            self.conn.send_array([1], np.int32)
            self.conn.send(b"\0")
            msg = self._status()
        if msg != "READY":
            raise IPIProtocolError(f"i-PI server: driver answered {msg} to STATUS, expected READY")
        self.conn.send_posdata(cell, positions)
        msg = self._status()
        if msg != "HAVEDATA":
            raise IPIProtocolError(f"i-PI server: driver answered {msg} after POSDATA, expected HAVEDATA")
        self.conn.send_header("GETFORCE")
        self.conn.recv_header(("FORCEREADY",))
        e, f, vir, _ = self.conn.recv_forces(len(positions))
        return e, f, vir

    def close(self, send_exit=True):
        if self.conn is not None:
            if send_exit:
                try:
                    self.conn.send_header("EXIT")
                except IPIProtocolError:
                    pass
            self.conn.close()
            self.conn = None
        self.listener.close()
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class IPIServerCalculator(Calculator):
    """ASE calculator whose energies/forces/stress come from an i-PI driver over a socket."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, server: IPIServer | None = None, **server_kwargs):
        super().__init__()
        self.server = server or IPIServer(**server_kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f, vir = self.server.calculate(self.atoms.get_positions(), np.asarray(self.atoms.cell[:]))
        self.results = {"energy": e, "free_energy": e, "forces": f}
        if self.atoms.cell.rank == 3 and any(self.atoms.pbc):
            self.results["stress"] = -full_3x3_to_voigt_6_stress(vir) / self.atoms.get_volume()

    def close(self):
        self.server.close()
