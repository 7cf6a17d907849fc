"""i-PI socket protocol, both roles, against ASE's implementations; malformed,
truncated and silent peers give IPIProtocolError within the timeout, never a hang."""
import os
import socket
import threading
import time

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.socketio import SocketClient, SocketIOCalculator

from ionscale.couplers.forcefield import IonscaleCalculator
from ionscale.couplers.ipi import IPIDriver, IPIProtocolError, IPIServer, IPIServerCalculator
from ionscale.kernels.atomistic.features import FeatureParams
from ionscale.kernels.atomistic.model import BPPotential


def alloy(seed=1):
    a = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    a.numbers[np.random.default_rng(seed).random(len(a)) < 0.4] = 79
    a.rattle(0.1, seed=seed)
    return a


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = BPPotential(FeatureParams([29, 79]), hidden=(16,)).double()
    with torch.no_grad():
        m.feature_std.fill_(0.5)
    return m


@pytest.mark.parametrize("mode", ["unix", "inet"])
def test_server_role_against_ase_socketclient_emt(mode, tmp_path):
    """ionscale's server drives ASE's SocketClient serving EMT: identical to direct EMT."""
    address = f"ionscale_test_srv_{os.getpid()}_{mode}"  # ASE maps a name to /tmp/ipi_<name>
    server = IPIServer(address, mode=mode, port=0, timeout=20, accept_timeout=20)
    served = alloy()
    served.calc = EMT()
    client = SocketClient(unixsocket=address) if mode == "unix" else SocketClient(port=server.port)
    t = threading.Thread(target=client.run, args=(served, True), daemon=True)
    t.start()
    calc = IPIServerCalculator(server)
    try:
        for step in range(3):
            a = alloy()  # same species as served; new positions and cell each step
            a.rattle(0.05, seed=step + 5)
            a.set_cell(a.cell[:] * (1 + 0.01 * step), scale_atoms=True)
            a.calc = calc
            ref = a.copy()
            ref.calc = EMT()
            assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-10)
            np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-10)
            np.testing.assert_allclose(a.get_stress(), ref.get_stress(), atol=1e-10)
    finally:
        calc.close()
    t.join(10)
    assert not t.is_alive()  # EXIT ends the client


@pytest.mark.parametrize("mode", ["unix", "inet"])
def test_driver_role_against_ase_socketiocalculator(mode, model, tmp_path):
    """ionscale's driver serves the model to ASE's i-PI server: forces equal direct evaluation,
    also along a short MD trajectory driven by ASE."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    port = free_port()
    name = f"ionscale_test_{mode}_{port}"
    atoms = alloy()
    driver = IPIDriver(atoms, IonscaleCalculator(model), address=name, mode=mode, port=port, timeout=30)
    thread = driver.start_thread()
    kw = dict(unixsocket=name) if mode == "unix" else dict(port=port)
    direct = IonscaleCalculator(model)
    with SocketIOCalculator(**kw) as calc:
        a = atoms.copy()
        a.calc = calc
        VelocityVerlet(a, timestep=2 * units.fs).run(3)
        ref = a.copy()
        ref.calc = direct
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-9)
        assert a.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(a.get_stress(), ref.get_stress(), atol=1e-10)
    thread.join(10)
    assert driver.error is None and not thread.is_alive()
    assert driver.n_evaluations >= 4


def _server_with_raw_client(tmp_path, payload: bytes, close=True):
    address = str(tmp_path / "g")
    server = IPIServer(address, mode="unix", timeout=1.0, accept_timeout=5)

    def garbage():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address)
        s.recv(12)  # the server's STATUS
        s.sendall(payload)
        if close:
            s.close()
        else:
            time.sleep(3)
            s.close()

    t = threading.Thread(target=garbage, daemon=True)
    t.start()
    return server, t


@pytest.mark.parametrize("payload,close,match", [
    (b"\x00\xffGARBAGE!!\x01\x02", True, "unexpected message header"),
    (b"READ", True, "truncated"),
    (b"", True, "connection closed before a message header"),
    (b"", False, "no data for 1 s"),
])
def test_server_rejects_garbage_truncation_and_silence(tmp_path, payload, close, match):
    server, t = _server_with_raw_client(tmp_path, payload, close)
    a = alloy()
    t0 = time.monotonic()
    with pytest.raises(IPIProtocolError, match=match):
        server.calculate(a.positions, a.cell[:])
    assert time.monotonic() - t0 < 4
    server.close(send_exit=False)
    t.join(5)


def test_server_rejects_wrong_atom_count(tmp_path):
    """A driver returning forces for another number of atoms is an error, not a silent mix-up."""
    address = f"ionscale_test_wrong_{os.getpid()}"
    server = IPIServer(address, mode="unix", timeout=5, accept_timeout=5)
    wrong = alloy()[:7]
    wrong.calc = EMT()

    def serve():
        try:
            SocketClient(unixsocket=address).run(wrong)
        except Exception:
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    a = alloy()
    with pytest.raises(IPIProtocolError):
        server.calculate(a.positions, a.cell[:])
    server.close(send_exit=False)
    t.join(5)


def test_driver_rejects_malformed_server_messages(tmp_path, model):
    """A fake server sends an implausible atom count, then garbage: the driver raises, no hang."""
    for payload, match in [(b"POSDATA     " + np.zeros(18).tobytes() + np.int32(-5).tobytes(), "implausible"),
                           (b"HELLO WORLD!", "unexpected message header"),
                           (b"POSDATA     " + np.zeros(5).tobytes(), "truncated")]:
        path = str(tmp_path / "d")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        driver = IPIDriver(alloy(), IonscaleCalculator(model), address=path, timeout=2)
        thread = driver.start_thread()
        listener.settimeout(5)
        conn, _ = listener.accept()
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(driver.error, IPIProtocolError) and match in str(driver.error)
        conn.close()
        listener.close()
        os.unlink(path)


def test_no_driver_times_out(tmp_path):
    server = IPIServer(str(tmp_path / "n"), mode="unix", accept_timeout=0.5)
    a = alloy()
    with pytest.raises(IPIProtocolError, match="no driver connected"):
        server.calculate(a.positions, a.cell[:])
    server.close()


def test_driver_connect_timeout():
    d = IPIDriver(alloy(), EMT(), address="/tmp/ionscale_no_such_socket", connect_timeout=0.3)
    with pytest.raises(IPIProtocolError, match="could not connect"):
        d.run()


def test_ipi_reference_engine_labels_like_emt():
    """``reference: {engine: ipi}``: labels from an external i-PI driver (ASE SocketClient + EMT)."""
    from ionscale.kernels.atomistic.dataset import Dataset
    from ionscale.kernels.atomistic.sampling import label, make_calculator

    name = f"ionscale_test_ref_{os.getpid()}"
    calc = make_calculator({"engine": "ipi", "address": name, "mode": "unix", "timeout": 20})
    structures = [alloy(seed=s) for s in (1, 1, 1)]
    for k, a in enumerate(structures):
        a.rattle(0.05, seed=10 + k)
    served = structures[0].copy()
    served.calc = EMT()
    t = threading.Thread(target=SocketClient(unixsocket=name).run, args=(served, True), daemon=True)
    t.start()
    try:
        ds = label(Dataset(structures), calc)
    finally:
        calc.close()
    t.join(10)
    for a, e, f in zip(structures, ds.energies, ds.forces):
        a.calc = EMT()
        assert e == pytest.approx(a.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-10)
