"""mxsim.Rank.parse: the command lines' spelling of a rank (the lqer and hwmodel CLIs' --rank;
issue 12: rank is one type, also where users type it)."""

import pytest

from mxsim import Rank


@pytest.mark.parametrize("text, want", [
    ("32", Rank(32)),
    ("0.1", Rank(0.1, "of_min_dim")),
    ("0.1:of_params", Rank(0.1, "of_params")),
    ("1.0:of_min_dim", Rank(1.0, "of_min_dim")),
])
def test_parse(text, want):
    assert Rank.parse(text) == want


def test_parsed_fractions_resolve_as_the_readings_say():
    # hand: min(4096, 11008) = 4096, 0.1 * 4096 = 409.6 -> 409;
    # 4096 * 11008 / (4096 + 11008) = 2985.2..., 0.1 of it = 298.5... -> 298
    assert Rank.parse("0.1").resolve(4096, 11008) == 409
    assert Rank.parse("0.1:of_params").resolve(4096, 11008) == 298


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "ten", "0.1:of_rows", "32:of_params", ""])
def test_bad_ranks_name_the_allowed_spellings(text):
    with pytest.raises(ValueError, match=r"rank|fraction"):
        Rank.parse(text)


def test_lqer_cli_rank_reaches_the_config_as_given():
    import argparse

    from lqer.cli import _overrides
    from lqer.config import load_config

    args = argparse.Namespace(rank=Rank.parse("0.1:of_params"), svd=None, factor_axis=None, accumulator=None)
    cfg = load_config("W4A8", **_overrides(args, "l2qer"))
    assert cfg.rank == Rank(0.1, "of_params")


@pytest.mark.parametrize("text, want", [("32", Rank(32)), ("0.1", Rank(0.1, "of_min_dim")),
                                        ("0.25:of_params", Rank(0.25, "of_params"))])
def test_lqer_cli_parses_every_rank_spelling(text, want):
    from lqer.cli import build_parser

    for cmd in (["eval"], ["table"], ["stream", "--out", "x"]):  # --rank is shared by the three commands
        assert build_parser().parse_args([*cmd, "--rank", text]).rank == want


@pytest.mark.parametrize("text", ["0", "1.5", "0.1:of_rows", "ten"])
def test_lqer_cli_rejects_a_bad_rank_as_a_usage_error(text, capsys):
    from lqer.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["eval", "--rank", text])
    assert stop.value.code == 2
    assert "lqer eval: error: argument --rank:" in capsys.readouterr().err
