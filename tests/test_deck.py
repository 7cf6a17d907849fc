"""Deck validation: every problem reported at once with YAML path and line."""
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ionscale.deck import load_deck_text, parse_override
from ionscale.errors import DeckError

GOOD = textwrap.dedent("""\
    run:
      name: t
      seed: 1
    stages:
      gen:
        type: spheres
        shape: [8, 8, 8]
        porosity: 0.4
      tau:
        type: tortuosity
        input: gen.volume
        phase: pore
        direction: x
        petsc: {ksp_type: cg}
    """)


def problems(text, **kw):
    with pytest.raises(DeckError) as e:
        load_deck_text(text, filename="deck.yaml", **kw)
    return [str(p) for p in e.value.problems]


def test_good_deck_parses():
    plan = load_deck_text(GOOD, filename="deck.yaml")
    assert [s.name for s in plan.stages] == ["gen", "tau"]
    assert plan.stages[1].params["input"].stage == "gen"
    assert plan.stages[1].params["rtol"] == 1e-8  # default filled in


def test_unknown_key_with_suggestion_and_line():
    msgs = problems(GOOD.replace("    phase: pore", "    phse: pore"))
    joined = "\n".join(msgs)
    assert "deck.yaml:12: stages.tau.phse: unknown key 'phse' (did you mean 'phase'?)" in joined
    assert "missing required key 'phase'" in joined


def test_all_problems_reported_together():
    bad = (GOOD.replace("porosity: 0.4", "porosity: 1.5")
               .replace("direction: x", "direction: w")
               .replace("seed: 1", "seed: one"))
    msgs = problems(bad)
    assert len(msgs) == 3, msgs
    assert any("run.seed: expected an integer, got 'one'" in m and "deck.yaml:3" in m for m in msgs)
    assert any("stages.gen.porosity: 1.5 is out of range (0, 1)" in m and "deck.yaml:8" in m for m in msgs)
    assert any("stages.tau.direction: 'w' is not one of" in m and "deck.yaml:13" in m for m in msgs)


def test_wrong_type():
    msgs = problems(GOOD.replace("shape: [8, 8, 8]", "shape: [8, 8]"))
    assert any("stages.gen.shape: expected exactly 3 items, got 2" in m for m in msgs)
    msgs = problems(GOOD.replace("shape: [8, 8, 8]", "shape: big"))
    assert any("stages.gen.shape: expected a list, got 'big'" in m for m in msgs)


def test_unknown_stage_type_suggests():
    msgs = problems(GOOD.replace("type: tortuosity", "type: tortuosty"))
    assert any("unknown stage type 'tortuosty' (did you mean 'tortuosity'?)" in m for m in msgs)


def test_reference_to_unknown_stage_or_output():
    msgs = problems(GOOD.replace("input: gen.volume", "input: gne.volume"))
    assert any("stages.tau.input" in m and "file not found" in m or "unknown stage" in m for m in msgs), msgs
    msgs = problems(GOOD.replace("input: gen.volume", "input: gen.volum"))
    assert any("stage 'gen' has no output 'volum'" in m and "did you mean 'volume'" in m for m in msgs), msgs


def test_reference_to_later_stage_is_an_error():
    text = GOOD.replace("input: gen.volume", "input: tau.porosity")
    msgs = problems(text)
    assert any("stages.tau.input" in m for m in msgs)


def test_missing_file(tmp_path):
    text = GOOD.replace("input: gen.volume", "input: no_such.tiff")
    msgs = problems(text, base_dir=str(tmp_path))
    assert any("stages.tau.input" in m and "file not found" in m and "no_such.tiff" in m for m in msgs), msgs


def test_duplicate_stage_names():
    text = GOOD + "  gen:\n    type: spheres\n    shape: [4, 4, 4]\n    porosity: 0.5\n"
    msgs = problems(text)
    assert any("deck.yaml:15: stages.gen: duplicate key 'gen'" in m for m in msgs), msgs


def test_yaml_syntax_error_has_line():
    msgs = problems("run:\n  name: [unclosed\nstages: {}\n")
    assert any(m.startswith("deck.yaml:") and "YAML syntax error" in m for m in msgs)


def test_yaml_cannot_execute_code():
    msgs = problems("run: !!python/object/apply:os.system ['echo hacked']\nstages: {}\n")
    assert any("YAML syntax error" in m for m in msgs)


def test_overrides():
    plan = load_deck_text(GOOD, overrides=["stages.tau.direction=y", "stages.gen.shape=[4,4,4]"])
    assert plan.stages[1].params["direction"] == "y"
    assert plan.stages[0].params["shape"] == [4, 4, 4]
    msgs = problems(GOOD, overrides=["stages.tua.direction=y"])
    assert any("has no key 'tua' (did you mean 'tau'?)" in m for m in msgs)
    msgs = problems(GOOD, overrides=["stages.tau.directon=y"])
    assert any("unknown key 'directon' (did you mean 'direction'?)" in m for m in msgs)
    with pytest.raises(DeckError):
        parse_override("no_equals_sign")


def test_sweep_expands_and_validates_cases():
    text = GOOD + "sweep:\n  over: {stages.gen.porosity: [0.3, 0.5]}\n"
    plan = load_deck_text(text)
    assert [c.stages[0].params["porosity"] for c in plan.case_plans] == [0.3, 0.5]
    msgs = problems(GOOD + "sweep:\n  over: {stages.gen.porosity: [0.3, 2.0]}\n")
    assert any("sweep case 1" in m and "out of range" in m for m in msgs)


# ---- fuzz: malformed decks never give anything but DeckError -------------------------------

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                         st.text(max_size=8))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(st.sampled_from(["run", "stages", "sweep", "other"]), yaml_values, max_size=3))
def test_fuzz_random_trees(tree):
    import yaml
    text = yaml.safe_dump(tree)
    try:
        load_deck_text(text, check_files=False)
    except DeckError as e:
        assert e.problems and all(str(p) for p in e.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(GOOD)), junk=st.text(max_size=6))
def test_fuzz_mangled_text(cut, junk):
    text = GOOD[:cut] + junk + GOOD[cut:]
    try:
        load_deck_text(text, check_files=False)
    except DeckError as e:
        assert e.problems


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(["shape", "porosity", "radius_vox", "seed", "phase", "direction", "rtol", "petsc", "input"]),
       value=yaml_values)
def test_fuzz_stage_values(key, value):
    import yaml
    tree = yaml.safe_load(GOOD)
    stage = "tau" if key in ("phase", "direction", "rtol", "petsc", "input") else "gen"
    tree["stages"][stage][key] = value
    try:
        load_deck_text(yaml.safe_dump(tree), check_files=False)
    except DeckError as e:
        assert all(f"stages.{stage}" in str(p) or "stages." in str(p) for p in e.problems)
