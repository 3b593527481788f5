"""hwmodel report --rank takes what mxsim.Rank.parse reads: an integer or a fraction."""

import pytest


def test_hwmodel_cli_prices_a_fraction_rank(capsys):
    from hwmodel.cli import main

    assert main(["report", "--model", "llama-7b", "--designs", "lqer-mxint", "--rank", "0.1", "--format", "csv"]) == 0
    frac = capsys.readouterr().out
    assert main(["report", "--model", "llama-7b", "--designs", "lqer-mxint", "--rank", "409", "--format", "csv"]) == 0
    # rank 0.1 of min(d_in, d_out) is 409 for every LLaMA-7B projection (min dim 4096): the same cost
    assert frac == capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # argparse's usage error
        main(["report", "--model", "llama-7b", "--rank", "0.1:of_rows"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "hwmodel report: error: argument --rank:" in err and "of_min_dim|of_params" in err
