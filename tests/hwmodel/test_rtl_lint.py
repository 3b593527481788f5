"""Verilator lint of the RTL (`verilator --lint-only -Wall`, every module at the parameters it is
used with) and the `default_nettype none` rule. Never skipped: a missing verilator fails with
the install command."""

from __future__ import annotations

import re

import pytest

from hwmodel import lint, synth


def test_every_module_lints_clean():
    assert lint.lint_all(log=None) >= len(synth.MODULE_FILES)


def test_every_file_sets_default_nettype_none():
    for path in sorted(synth.RTL_DIR.glob("*.v")):
        text = path.read_text()
        first_module = text.index("\nmodule ")
        assert text.find("`default_nettype none") in range(0, first_module), path.name
        assert text.rstrip().endswith("`default_nettype wire"), f"{path.name} leaks default_nettype none"
        # every port has an explicit net type (needed under default_nettype none)
        assert not re.search(r"^\s*(input|output)\s+(signed\s+)?\[", text, re.M), path.name


def test_every_module_is_a_lint_target():
    names = {m for m, _ in lint.targets()}
    modules = set()
    for path in synth.RTL_DIR.glob("*.v"):
        modules |= set(re.findall(r"^module (\w+)", path.read_text(), re.M))
    assert modules <= names, f"modules not linted: {sorted(modules - names)}"


def test_a_lint_warning_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("`default_nettype none\nmodule bad (input wire [3:0] a, output wire y);\n"
                   "    assign y = a[0];\nendmodule\n`default_nettype wire\n")
    with pytest.raises(lint.LintError, match=r"(?s)bad .*UNUSEDSIGNAL"):
        lint.lint("bad", {}, files=[bad])


def test_missing_verilator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lint.shutil, "which", lambda name: None)
    with pytest.raises(lint.LintError, match="apt-get install -y --no-install-recommends verilator"):
        lint.verilator_path()


def test_cli_lint_and_verify_bad_input(capsys, monkeypatch):
    from hwmodel import cli

    monkeypatch.setattr(lint, "lint_all", lambda log=print: 0)   # (the lint itself is tested above)
    assert cli.main(["lint"]) == 0
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "--vectors", "0"])
    assert e.value.code == 2 and "--vectors: expected a positive integer, got 0" in capsys.readouterr().err
