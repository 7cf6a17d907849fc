"""Every deck in inputs/ runs end to end at a small size.

Small-size overrides for ``inputs/NAME.yaml`` live in ``tests/decks/NAME.set``
(one ``path.to.key=value`` per line, '#' comments); a deck without one runs as is.
"""
import importlib.util
from pathlib import Path

import pytest

from conftest import ELECTRODE, ROOT, run_cli
from ionscale.results import load

DECKS = sorted((ROOT / "inputs").glob("*.yaml"))


def overrides_for(deck: Path) -> list[str]:
    f = ROOT / "tests" / "decks" / f"{deck.stem}.set"
    if not f.exists():
        return []
    lines = [l.split("#", 1)[0].strip() for l in f.read_text().splitlines()]
    return [x for l in lines if l for x in ("--set", l)]


@pytest.mark.parametrize("deck", DECKS, ids=[d.stem for d in DECKS])
def test_deck_runs_end_to_end(deck, tmp_path):
    if "shared/data/electrode.tiff" in deck.read_text() and not ELECTRODE.exists():
        pytest.skip(f"{deck.name} reads the real electrode image, absent at {ELECTRODE}")
    if "parameter_set: bpx/" in deck.read_text() and importlib.util.find_spec("bpx") is None:
        pytest.skip(f"{deck.name} reads a BPX parameter file: needs the optional 'bpx' package (extra [bpx])")
    if "transport: lammps" in deck.read_text() and not Path("/usr/lib/python3/dist-packages/lammps").is_dir():
        pytest.skip(f"{deck.name} needs Debian's python3-lammps (installed by scripts/setup.sh as root)")
    r = run_cli("run", deck, "--output", tmp_path, *overrides_for(deck), timeout=900)
    assert r.returncode == 0, f"{deck.name} failed:\n{r.stderr[-3000:]}"
    results = list(tmp_path.glob("*.h5"))
    assert len(results) == 1
    stages = load(results[0])
    assert stages, "no stage results written"
