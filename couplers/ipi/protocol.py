"""The i-PI wire protocol (https://ipi-code.org, "sockets" section; as used by ASE).

Every message starts with a 12-byte ASCII header padded with spaces. Payloads are
native little-endian int32 / float64 in atomic units (Bohr, Hartree):

    server -> client  STATUS                         client -> server  READY | NEEDINIT | HAVEDATA
    server -> client  INIT  i4 bead, i4 n, n bytes
    server -> client  POSDATA  f8[9] cell^T, f8[9] (cell^-1)^T, i4 natoms, f8[3 natoms] positions
    server -> client  GETFORCE                       client -> server  FORCEREADY f8 energy, i4 natoms,
                                                     f8[3 natoms] forces, f8[9] virial^T, i4 n, n bytes
    server -> client  EXIT

The virial is ``-V sigma`` (sigma the ASE stress). Every receive has a timeout; a
short read, an unknown header, a negative or implausible size, or a non-finite
number raise :class:`IPIProtocolError` instead of blocking.
"""
from __future__ import annotations

import os
import socket

import numpy as np
from ase import units

from ionscale.errors import IonscaleError

HEADER_LEN = 12
SERVER_MESSAGES = ("STATUS", "INIT", "POSDATA", "GETFORCE", "EXIT")
CLIENT_MESSAGES = ("READY", "NEEDINIT", "HAVEDATA", "FORCEREADY")
MAX_ATOMS = 50_000_000
MAX_EXTRA_BYTES = 1 << 26
BOHR = units.Bohr  # Angstrom per Bohr
HARTREE = units.Ha  # eV per Hartree


class IPIProtocolError(IonscaleError):
    """The i-PI peer sent something that does not follow the protocol, or nothing at all.

    Likely causes: the peer crashed or closed the socket mid-message (truncated
    message), a program that is not an i-PI code is connected to the port, the
    peer computes for longer than ``timeout`` seconds, or the peer's atom count
    differs from the structure sent.
    """

    exit_code = 1


class IPIPeerClosed(IPIProtocolError):
    """The peer closed the connection before sending any byte of a message (a clean end
    between messages for a driver; an error everywhere else)."""


def unix_socket_path(name: str) -> str:
    """i-PI/ASE convention: a bare name maps to ``/tmp/ipi_<name>``; a path is used as is."""
    return name if os.sep in name else f"/tmp/ipi_{name}"


class IPIConnection:
    """One connected socket speaking i-PI, with a receive timeout (seconds)."""

    def __init__(self, sock: socket.socket, timeout: float = 60.0, peer: str = "peer"):
        self.sock = sock
        self.timeout = timeout
        self.peer = peer
        sock.settimeout(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- raw ------------------------------------------------------------------------
    def recv_exact(self, nbytes: int, what: str) -> bytes:
        buf = bytearray()
        # each recv returns >= 1 byte or raises: at most nbytes iterations
        for _ in range(max(nbytes, 1)):
            if len(buf) >= nbytes:
                break
            try:
                chunk = self.sock.recv(nbytes - len(buf))
            except socket.timeout:
                raise IPIProtocolError(f"i-PI {self.peer}: no data for {self.timeout:g} s while reading {what} "
                                       f"({len(buf)} of {nbytes} bytes received)") from None
            except OSError as e:
                raise IPIProtocolError(f"i-PI {self.peer}: socket error while reading {what}: {e}") from None
            if not chunk:
                if not buf:
                    raise IPIPeerClosed(f"i-PI {self.peer}: connection closed before {what}")
                raise IPIProtocolError(f"i-PI {self.peer}: connection closed in the middle of {what} "
                                       f"(truncated message: {len(buf)} of {nbytes} bytes)")
            buf += chunk
        return bytes(buf)

    def send(self, data: bytes):
        # MSG_NOSIGNAL: a peer that has gone gives EPIPE (an exception) instead of SIGPIPE, whose
        # handler MPI libraries may have replaced (a plain sendall then kills the process)
        flags = getattr(socket, "MSG_NOSIGNAL", 0)
        view = memoryview(data)
        try:
            for _ in range(len(view) + 1):  # each send moves >= 1 byte or raises
                if not view:
                    break
                sent = self.sock.send(view, flags)
                view = view[sent:]
        except socket.timeout:
            raise IPIProtocolError(f"i-PI {self.peer}: send timed out after {self.timeout:g} s") from None
        except OSError as e:
            raise IPIProtocolError(f"i-PI {self.peer}: cannot send ({e}); the peer has gone") from None

    # ---- typed ----------------------------------------------------------------------
    def send_header(self, msg: str):
        self.send(msg.encode("ascii").ljust(HEADER_LEN))

    def recv_header(self, allowed) -> str:
        raw = self.recv_exact(HEADER_LEN, "a message header")
        try:
            msg = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            msg = None
        if msg not in allowed:
            raise IPIProtocolError(f"i-PI {self.peer}: unexpected message header {raw!r} "
                                   f"(expected one of {', '.join(allowed)})")
        return msg

    def send_array(self, a, dtype):
        self.send(np.ascontiguousarray(a, dtype=dtype).tobytes())

    def recv_array(self, count: int, dtype, what: str):
        dt = np.dtype(dtype)
        a = np.frombuffer(self.recv_exact(count * dt.itemsize, what), dtype=dt).copy()
        if dt.kind == "f" and not np.isfinite(a).all():
            raise IPIProtocolError(f"i-PI {self.peer}: non-finite numbers in {what}")
        return a

    def recv_count(self, what: str, limit: int) -> int:
        n = int(self.recv_array(1, np.int32, what)[0])
        if n < 0 or n > limit:
            raise IPIProtocolError(f"i-PI {self.peer}: implausible {what} = {n} (allowed 0..{limit})")
        return n

    # ---- messages (units converted: Angstrom, eV) ------------------------------------
    def send_posdata(self, cell, positions):
        cell = np.asarray(cell, float).reshape(3, 3)
        icell = np.linalg.pinv(cell)
        self.send_header("POSDATA")
        self.send_array(cell.T / BOHR, np.float64)
        self.send_array(icell.T * BOHR, np.float64)
        self.send_array([len(positions)], np.int32)
        self.send_array(np.asarray(positions, float) / BOHR, np.float64)

    def recv_posdata(self):
        cell = self.recv_array(9, np.float64, "POSDATA cell").reshape(3, 3).T * BOHR
        self.recv_array(9, np.float64, "POSDATA inverse cell")
        n = self.recv_count("POSDATA atom count", MAX_ATOMS)
        pos = self.recv_array(3 * n, np.float64, "POSDATA positions").reshape(n, 3) * BOHR
        return cell, pos

    def send_forces(self, energy, forces, virial, extra: bytes = b"\0"):
        self.send_header("FORCEREADY")
        self.send_array([energy / HARTREE], np.float64)
        self.send_array([len(forces)], np.int32)
        self.send_array(np.asarray(forces, float) * (BOHR / HARTREE), np.float64)
        self.send_array(np.asarray(virial, float).T / HARTREE, np.float64)
        self.send_array([len(extra)], np.int32)
        self.send(extra)

    def recv_forces(self, natoms_expected: int):
        e = float(self.recv_array(1, np.float64, "FORCEREADY energy")[0]) * HARTREE
        n = self.recv_count("FORCEREADY atom count", MAX_ATOMS)
        if n != natoms_expected:
            raise IPIProtocolError(f"i-PI {self.peer}: returned forces for {n} atoms, sent {natoms_expected}")
        f = self.recv_array(3 * n, np.float64, "FORCEREADY forces").reshape(n, 3) * (HARTREE / BOHR)
        vir = self.recv_array(9, np.float64, "FORCEREADY virial").reshape(3, 3).T * HARTREE
        nextra = self.recv_count("FORCEREADY extra-string length", MAX_EXTRA_BYTES)
        extra = self.recv_exact(nextra, "FORCEREADY extra string") if nextra else b""
        return e, f, vir, extra
