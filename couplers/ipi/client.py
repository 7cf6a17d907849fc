"""i-PI driver (client role): connects to an i-PI server (i-PI, ASE's
``SocketIOCalculator``, LAMMPS ``fix ipi``...) and answers its force requests with an
ASE calculator, e.g. :class:`ionscale.couplers.forcefield.IonscaleCalculator`."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from .protocol import SERVER_MESSAGES, IPIConnection, IPIPeerClosed, IPIProtocolError, unix_socket_path


def connect(address: str, mode: str = "unix", port: int | None = None, connect_timeout: float = 30.0,
            host: str = "127.0.0.1") -> socket.socket:
    """Connect, retrying every 50 ms until ``connect_timeout`` (the server may still be starting)."""
    deadline = time.monotonic() + connect_timeout
    last = None
    for _ in range(int(connect_timeout / 0.05) + 1):
        s = None
        try:
            if mode == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(unix_socket_path(address))
            elif mode == "inet":
                s = socket.create_connection((host, int(port)), timeout=connect_timeout)
            else:
                raise ValueError(f"i-PI mode must be 'unix' or 'inet', got {mode!r}")
            return s
        except (FileNotFoundError, ConnectionRefusedError) as e:
            last = e
            if s is not None:
                s.close()
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise IPIProtocolError(f"i-PI driver: could not connect to {mode} socket "
                           f"{unix_socket_path(address) if mode == 'unix' else f'{host}:{port}'} "
                           f"within {connect_timeout:g} s ({last})")


class IPIDriver:
    """Serve ``calculator`` for ``atoms`` (numbers fixed; positions and cell come from the server)."""

    def __init__(self, atoms, calculator, address="ionscale", mode="unix", port=None, timeout=600.0,
                 connect_timeout=30.0, host="127.0.0.1", max_requests=10_000_000):
        self.atoms = atoms.copy()
        self.atoms.calc = calculator
        self.address, self.mode, self.port, self.host = address, mode, port, host
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_requests = max_requests
        self.n_evaluations = 0

    def _compute(self, cell, positions):
        if len(positions) != len(self.atoms):
            raise IPIProtocolError(f"i-PI driver: server sent {len(positions)} atoms, this driver serves {len(self.atoms)}")
        self.atoms.set_cell(cell)
        self.atoms.set_positions(positions)
        e = self.atoms.get_potential_energy()
        f = self.atoms.get_forces()
        if self.atoms.cell.rank == 3 and any(self.atoms.pbc):
            from ase.stress import voigt_6_to_full_3x3_stress
            vir = -self.atoms.get_volume() * voigt_6_to_full_3x3_stress(self.atoms.get_stress())
        else:
            vir = np.zeros((3, 3))
        self.n_evaluations += 1
        return e, f, vir

    def run(self):
        """Answer requests until the server sends EXIT or closes the connection."""
        conn = IPIConnection(connect(self.address, self.mode, self.port, self.connect_timeout, self.host),
                             self.timeout, peer="server")
        state, result = "READY", None
        try:
            for _ in range(self.max_requests):
                try:
                    msg = conn.recv_header(SERVER_MESSAGES)
                except IPIPeerClosed:
                    return  # the server went away between messages: a normal end
                if msg == "EXIT":
                    return
                if msg == "STATUS":
                    conn.send_header(state)
                elif msg == "INIT":
                    conn.recv_count("INIT bead index", 1 << 30)
                    n = conn.recv_count("INIT string length", 1 << 26)
                    conn.recv_exact(n, "INIT string")
                    state = "READY"
                elif msg == "POSDATA":
                    cell, pos = conn.recv_posdata()
                    result = self._compute(cell, pos)
                    state = "HAVEDATA"
                elif msg == "GETFORCE":
                    if state != "HAVEDATA":
                        raise IPIProtocolError("i-PI driver: GETFORCE before any POSDATA")
                    conn.send_forces(*result)
                    state = "READY"
        finally:
            conn.close()

    def start_thread(self) -> threading.Thread:
        """Run the driver in a daemon thread; its exception (if any) is kept in ``self.error``."""
        self.error = None

        def target():
            try:
                self.run()
            except BaseException as e:  # reported by the caller through .error
                self.error = e

        t = threading.Thread(target=target, name="ipi-driver", daemon=True)
        t.start()
        return t


def serve_calculator(atoms, calculator, **kwargs):
    """Blocking convenience: ``IPIDriver(atoms, calculator, **kwargs).run()``."""
    d = IPIDriver(atoms, calculator, **kwargs)
    d.run()
    return d.n_evaluations
