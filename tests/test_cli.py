"""The command line end to end: run, validate, describe, info, errors, restart."""
import os
import textwrap

import h5py
import numpy as np
import pytest

from conftest import run_cli
from ionscale.results import load

SMALL = textwrap.dedent("""\
    run:
      name: small
      seed: 7
    stages:
      structure:
        type: spheres
        shape: [20, 20, 20]
        porosity: 0.45
        radius_vox: 3
      tau:
        type: tortuosity
        input: structure.volume
        phase: [pore]
        direction: all
    """)


@pytest.fixture
def deck(tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


def test_run_writes_results_with_units_and_provenance(deck, tmp_path):
    out = tmp_path / "res"
    r = run_cli("run", deck, "--output", out)
    assert r.returncode == 0, r.stderr
    assert "tau_x" in r.stdout
    path = out / "small.h5"
    with h5py.File(path) as f:
        assert f["tau/tau_x"].attrs["units"] == "1"
        assert f["structure/voxel_size_um"].attrs["units"] == "um"
        prov = f["provenance"].attrs
        assert "tortuosity" in prov["deck_text"] and prov["ranks"] == 1
        assert "petsc" in prov["versions"] and "stage_wall_time_s" in prov
    res = load(path)
    assert 1.0 < res["tau"]["tau_x"] < 3.0
    assert res["tau"]["porosity"] == pytest.approx(res["structure"]["porosity"])


def test_two_ranks_give_the_same_results(deck, tmp_path):
    r1 = run_cli("run", deck, "--output", tmp_path / "one", "--set", "stages.tau.rtol=1e-12")
    r2 = run_cli("run", deck, "--output", tmp_path / "two", "--set", "stages.tau.rtol=1e-12", np=2)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    a, b = load(tmp_path / "one" / "small.h5"), load(tmp_path / "two" / "small.h5")
    for d in "xyz":
        assert a["tau"][f"tau_{d}"] == pytest.approx(b["tau"][f"tau_{d}"], rel=1e-8)
    with h5py.File(tmp_path / "two" / "small.h5") as f:
        assert f["provenance"].attrs["ranks"] == 2


def test_bad_deck_exits_2_on_all_ranks_with_one_line_per_problem(deck, tmp_path):
    deck.write_text(SMALL.replace("phase: [pore]", "phse: [pore]").replace("porosity: 0.45", "porosity: 7"))
    r = run_cli("run", deck, np=2)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("ionscale: error:")]
    assert len(lines) == 3, r.stderr  # unknown key, missing phase, porosity range, printed once
    assert "Traceback" not in r.stderr
    assert any("did you mean 'phase'" in l for l in lines)
    r = run_cli("--traceback", "run", deck)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_validate_and_set(deck):
    r = run_cli("validate", deck)
    assert r.returncode == 0 and "valid" in r.stdout
    r = run_cli("validate", deck, "--set", "stages.tau.direction=q")
    assert r.returncode == 2 and "stages.tau.direction" in r.stderr


def test_bad_image_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.tiff"
    bad.write_bytes(b"II*\x00garbage")
    deck = tmp_path / "img.yaml"
    deck.write_text(f"stages:\n  img:\n    type: image\n    path: {bad}\n")
    r = run_cli("run", deck, "--output", tmp_path / "out")
    assert r.returncode == 2
    assert "broken.tiff: cannot read image" in r.stderr and "Traceback" not in r.stderr


def test_describe_and_info():
    r = run_cli("describe")
    assert r.returncode == 0 and "tortuosity" in r.stdout and "spheres" in r.stdout
    r = run_cli("describe", "tortuosity")
    assert r.returncode == 0
    assert "direction" in r.stdout and "{x, y, z, all}" in r.stdout and "tau_x" in r.stdout
    r = run_cli("describe", "tortuosty")
    assert r.returncode == 2 and "did you mean 'tortuosity'" in r.stderr
    r = run_cli("info")
    assert r.returncode == 0 and "petsc" in r.stdout and "ranks" in r.stdout


def test_restart_after_kill_reuses_finished_stage(deck, tmp_path):
    out = tmp_path / "res"
    killed = run_cli("run", deck, "--output", out, env_extra={"IONSCALE_KILL_AFTER_STAGE": "structure"})
    assert killed.returncode != 0
    path = out / "small.h5"
    with h5py.File(path) as f:  # the file left behind is complete and readable
        assert "structure" in f and "tau" not in f
    again = run_cli("run", deck, "--output", out, "--restart")
    assert again.returncode == 0, again.stderr
    assert "structure (spheres): unchanged, reusing" in again.stderr
    fresh = run_cli("run", deck, "--output", tmp_path / "fresh")
    a, b = load(path), load(tmp_path / "fresh" / "small.h5")
    np.testing.assert_array_equal(a["structure"]["volume"], b["structure"]["volume"])
    assert a["tau"]["tau_y"] == b["tau"]["tau_y"]
    # a changed parameter invalidates that stage and everything downstream of it
    third = run_cli("run", deck, "--output", out, "--restart", "--set", "stages.structure.porosity=0.5")
    assert third.returncode == 0 and "reusing" not in third.stderr


def test_failed_write_keeps_previous_results(deck, tmp_path):
    out = tmp_path / "res"
    assert run_cli("run", deck, "--output", out).returncode == 0
    before = (out / "small.h5").read_bytes()
    # a stage that fails on bad input must not touch the earlier results file
    r = run_cli("run", deck, "--output", out, "--set", "stages.tau.phase=[nope]")
    assert r.returncode == 2 and "unknown phase name 'nope'" in r.stderr
    assert (out / "small.h5").read_bytes() == before or load(out / "small.h5")["structure"]


def test_sweep_on_split_communicators(deck, tmp_path):
    text = SMALL + "sweep:\n  over: {stages.structure.porosity: [0.35, 0.5]}\n  ranks_per_case: 1\n"
    deck.write_text(text.replace("direction: all", "direction: x"))
    r = run_cli("run", deck, "--output", tmp_path / "sw", np=2)
    assert r.returncode == 0, r.stderr
    res = h5py.File(tmp_path / "sw" / "small.h5")
    taus = [res[f"case_{i:04d}/tau/tau_x"][()] for i in range(2)]
    pors = [res[f"case_{i:04d}/structure/porosity"][()] for i in range(2)]
    assert pors[0] == pytest.approx(0.35, abs=0.01) and pors[1] == pytest.approx(0.5, abs=0.01)
    assert taus[0] > taus[1] > 1.0  # lower porosity, more tortuous
    r = run_cli("run", deck, "--output", tmp_path / "sw2", "--set", "sweep.ranks_per_case=3", np=2)
    assert r.returncode == 2 and "does not divide the 2 MPI ranks" in r.stderr


def test_sweep_field_export_points_into_each_case_file(tmp_path):
    """Exported fields in a sweep live in the case files; each case's XDMF sidecar must name
    its own case file (not the index), so ParaView opens every case."""
    import xml.etree.ElementTree as ET

    deck = tmp_path / "fields.yaml"
    deck.write_text(textwrap.dedent("""\
        run: {name: fx, seed: 3}
        stages:
          structure: {type: spheres, shape: [12, 10, 10], porosity: 0.5, radius_vox: 2}
          props:
            type: effective_transport
            input: structure.volume
            transport: {ionic: {pore: 1.0}}
            direction: x
            fields: true
        sweep:
          over: {stages.structure.porosity: [0.45, 0.6]}
        """))
    r = run_cli("run", deck, "--output", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    for i in range(2):
        case = tmp_path / "o" / "fx.cases" / f"case_{i:04d}.h5"
        xdmf = tmp_path / "o" / "fx.cases" / f"case_{i:04d}_props.xdmf"
        items = [d.text for d in ET.parse(xdmf).getroot().iter("DataItem") if d.get("Format") == "HDF"]
        assert items
        with h5py.File(case, "r") as f:
            for item in items:
                fname, dset = item.split(":")
                assert fname == case.name and f[dset].shape == (12, 10, 10)


def test_command_line_petsc_options_reach_one_prefixed_solver(deck, tmp_path):
    r = run_cli("run", deck, "--output", tmp_path, "--quiet", "-tau_y_ksp_monitor")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "Residual norms for tau_y_ solve" in out
    assert "tau_x_ solve" not in out and "tau_z_ solve" not in out


def test_reference_to_an_entry_of_a_dict_output(tmp_path):
    """``stage.output.key`` passes one entry of a dict-valued output; a wrong key stops the run
    with a message naming the reference, the entries it has and the closest one."""
    labels = np.ones((16, 12, 12), np.uint8)
    labels[:, 2:10, 3:9] = 0  # a straight pore channel along x: porosity 1/3, tau_x = 1
    np.save(tmp_path / "labels.npy", labels)
    deck = tmp_path / "entry.yaml"
    deck.write_text(textwrap.dedent("""\
        run: {name: entry, seed: 1}
        stages:
          gen: {type: image, path: labels.npy, phases: {pore: 0, solid: 1}}
          tau: {type: tortuosity, input: gen.volume, phase: pore, direction: x}
          cell:
            type: dfn
            parameter_set: Chen2020
            overrides:
              positive_electrode_porosity: gen.volume_fractions.pore
              positive_electrode_tortuosity_factor: tau.tau_x
            c_rates: [2]
            points: [6, 4, 6]
            r_points: [6, 6]
        """))
    r = run_cli("run", deck, "--output", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "o" / "entry.h5") as f:
        assert f["gen/volume_fractions/pore"][()] == pytest.approx(1 / 3)
        assert f["tau/tau_x"][()] == pytest.approx(1.0, rel=1e-6)
        one_third = f["cell/capacity_Ah"][()]
    # the entry reached the cell model: a different porosity gives a different discharge
    deck.write_text(deck.read_text().replace("gen.volume_fractions.pore", "0.5"))
    r = run_cli("run", deck, "--output", tmp_path / "o1")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "o1" / "entry.h5") as f:
        assert not np.allclose(f["cell/capacity_Ah"][()], one_third)
    deck.write_text(deck.read_text().replace("positive_electrode_porosity: 0.5",
                                             "positive_electrode_porosity: gen.volume_fractions.pore"))
    deck.write_text(deck.read_text().replace("volume_fractions.pore", "volume_fractions.poer"))
    r = run_cli("run", deck, "--output", tmp_path / "o2")
    assert r.returncode == 2
    assert ("reference 'gen.volume_fractions.poer': 'gen.volume_fractions' has no entry 'poer'" in r.stderr
            and "did you mean 'pore'" in r.stderr), r.stderr
