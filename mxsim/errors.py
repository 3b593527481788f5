"""User mistakes vs bugs: the one mechanism every command line of the toolkit uses.

- ``UserError`` (a ``ValueError``) is raised where bad input enters: its message names the
  argument and the allowed values. Library callers can catch it as a plain ValueError.
- ``user_input("--rounding")`` turns a ValueError/TypeError raised while *interpreting* a
  user's value (parsing a format, a rank, a config file) into a UserError naming the argument.
- ``ArgumentParser`` is argparse's, but reports a usage mistake on ONE line
  (``PROG: error: ...`` and a pointer to ``--help``) with exit status 2.
- ``run_cli(prog, body)`` runs a command: UserError -> one line on stderr and exit 2; Ctrl-C
  -> one line (with an optional resume hint) and exit 130; anything else is a bug and keeps
  its traceback.

It lives in mxsim because data (and imports) flow mxsim -> lqer | hwmodel -> experiments.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Callable


class UserError(ValueError):
    """Bad input from the user; printed by ``run_cli`` as one line, exit status 2."""


@contextlib.contextmanager
def user_input(what: str):
    """Errors raised while interpreting the user's value for ``what`` become a UserError naming it."""
    try:
        yield
    except UserError as e:
        msg = str(e)
        raise UserError(msg if what in msg else f"{what}: {msg}") from None
    except (ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise UserError(f"{what}: {msg}") from None


def rank_arg(text: str):
    """An argparse ``type=``: a rank as mxsim.Rank.parse reads it (32, 0.1, 0.1:of_params)."""
    from .rank import Rank

    try:
        return Rank.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def int_at_least(lo: int):
    """An argparse ``type=``: an integer >= ``lo`` (every CLI's counts, sizes and ranks)."""
    want = "a positive integer" if lo == 1 else f"an integer >= {lo}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {want}, got {v}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (the full usage is one ``--help`` away)."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def run_cli(prog: str, body: Callable[[], int | None], interrupted_hint: str | None = None) -> int:
    """Run ``body()``; map user mistakes and Ctrl-C to one line on stderr (see the module doc)."""
    try:
        rc = body()
    except UserError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; {interrupted_hint}" if interrupted_hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        with contextlib.suppress(Exception):
            sys.stderr.close()
        return 141
    return 0 if rc is None else int(rc)
