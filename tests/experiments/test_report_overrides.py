"""The report says in its own header which preset settings it overrides (issue 12)."""

import tomllib
from pathlib import Path

from experiments.report import ReportSettings, overrides_note

PRESETS = Path(__file__).resolve().parents[2] / "lqer" / "configs"


def _svd(name):
    return tomllib.loads((PRESETS / f"{name}.toml").read_text())["svd"]


def test_the_default_report_names_the_svd_switch_of_the_presets_it_runs():
    # the preset files themselves (read here as TOML, not through lqer) ask for the full SVD
    assert _svd("W4A8") == _svd("W3A8") == "full"
    note = overrides_note(ReportSettings())
    assert note == "Settings this report overrides in the presets: svd: W3A8 'full', W4A8 'full' -> 'randomized'."


def test_nothing_overridden_says_none_and_a_block_limit_is_named():
    assert overrides_note(ReportSettings(svd="full")) == "Settings this report overrides in the presets: none."
    note = overrides_note(ReportSettings(svd="full", max_blocks=2))
    assert note.endswith("only the first 2 decoder block(s) quantized (the rest full precision).")


def test_both_overrides_are_named_in_one_sentence():
    # the default configs W4A8, W3A8 (both 'full' in their TOML, checked above), named in sorted order
    assert overrides_note(ReportSettings(max_blocks=1)) == (
        "Settings this report overrides in the presets: svd: W3A8 'full', W4A8 'full' -> 'randomized'; "
        "only the first 1 decoder block(s) quantized (the rest full precision).")
    # a preset list of one: only that preset is named
    assert overrides_note(ReportSettings(configs=["W2A8"])) == \
        "Settings this report overrides in the presets: svd: W2A8 'full' -> 'randomized'."
