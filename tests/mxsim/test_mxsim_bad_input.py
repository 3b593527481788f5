"""Bad input at mxsim's boundaries: the demo CLI, the shared CLI mechanism (mxsim.errors) and the
one atomic-write helper (mxsim.files). Expected behaviour from issue 13 and from argparse /
open() / mkdir() conventions (exit 2 for usage errors, modes 0666/0777 minus the umask)."""

import os
import stat
import subprocess
import sys

import pytest

from mxsim.cli import main as mxsim_main
from mxsim.errors import ArgumentParser, UserError, run_cli, user_input
from mxsim.files import atomic_dir, atomic_files, atomic_write, check_output, clean_stale_temps, write_text


def _one_error_line(capsys, prog, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


# ----------------------------------------------------------------------------- the demo CLI
@pytest.mark.parametrize("argv, needle", [
    (["demo", "--rows", "0"], "--rows"),          # was a ZeroDivisionError traceback
    (["demo", "--cols", "-3"], "--cols"),
    (["demo", "--rows", "two"], "--rows"),
    (["demo", "--rounding", "nearest"], "--rounding"),
    (["demo", "--dist", "cauchy"], "--dist"),
])
def test_mxsim_demo_refuses_bad_arguments_in_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        mxsim_main(argv)
    assert e.value.code == 2
    line = _one_error_line(capsys, "mxsim demo", needle)
    if needle == "--rounding":
        assert "nearest_even" in line  # the allowed values are listed


# ----------------------------------------------------------------------------- the shared mechanism
def test_run_cli_maps_user_errors_interrupts_and_keeps_bug_tracebacks(capsys):
    def user_mistake():
        raise UserError("--thing: must be one of a, b;\n got 'c'")

    assert run_cli("prog sub", user_mistake) == 2
    assert _one_error_line(capsys, "prog sub", "--thing", "got 'c'")

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli("prog", interrupted, interrupted_hint="run it again to resume") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["prog: interrupted; run it again to resume"]

    def bug():
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):  # a bug is not dressed up as a user mistake
        run_cli("prog", bug)
    assert run_cli("prog", lambda: None) == 0


@pytest.mark.parametrize("exc", [ValueError("bad value"), TypeError("bad type"), KeyError("no such key")])
def test_user_input_names_the_argument(exc):
    with pytest.raises(UserError, match=r"^--format: ") as e:
        with user_input("--format"):
            raise exc
    assert isinstance(e.value, ValueError)  # library callers can still catch ValueError


def test_argument_parser_usage_error_is_one_line(capsys):
    p = ArgumentParser(prog="tool")
    p.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--n", "x"])
    assert e.value.code == 2
    _one_error_line(capsys, "tool", "--n", "--help")


# ----------------------------------------------------------------------------- output locations
@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    return f


@pytest.mark.parametrize("case, kind, needle", [
    ("under_a_file", "file", "not a directory"),
    ("under_a_file", "dir", "not a directory"),
    ("file_is_dir", "file", "is a directory"),
    ("dir_is_file", "dir", "not a directory"),
    ("empty", "file", "required"),
])
def test_check_output_refuses_unusable_locations_and_creates_nothing(tmp_path, a_file, case, kind, needle):
    path = {"under_a_file": a_file / "deep" / "out.csv", "file_is_dir": tmp_path,
            "dir_is_file": a_file, "empty": ""}[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=needle) as e:
        check_output(path, "--out", kind)
    assert "--out" in str(e.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs procfs (read-only even for root)")
def test_check_output_probes_real_writability():
    # os.access says yes to root everywhere; creating a file in procfs fails for everyone
    with pytest.raises(UserError, match="not writable"):
        check_output("/proc/self/new-dir/out.csv", "--csv", "file")


def test_check_output_accepts_creatable_paths_without_creating_them(tmp_path):
    p = check_output(tmp_path / "a" / "b" / "report", "--out", "dir")
    assert p == tmp_path / "a" / "b" / "report" and not (tmp_path / "a").exists()
    assert check_output(tmp_path / "x.csv", "--csv") == tmp_path / "x.csv"


# ----------------------------------------------------------------------------- atomic writes
@pytest.fixture
def umask_002():
    old = os.umask(0o002)
    yield 0o002
    os.umask(old)


def test_files_and_dirs_follow_the_umask(tmp_path, umask_002):
    # like open() and mkdir(): 0666 & ~umask and 0777 & ~umask (tempfile's 0600/0700 lock the team out)
    f = write_text(tmp_path / "r.csv", "a\n")
    assert stat.S_IMODE(f.stat().st_mode) == 0o664
    with atomic_write(tmp_path / "m.safetensors") as tmp:
        tmp.write_bytes(b"1")
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o664
    with atomic_dir(tmp_path / "report") as d:
        (d / "x.md").write_text("x")
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o775
    with atomic_files(tmp_path / "sweep") as d:
        (d / "results.csv").write_text("x")
    assert stat.S_IMODE((tmp_path / "sweep" / "results.csv").stat().st_mode) == 0o664
    assert sorted(os.listdir(tmp_path / "sweep")) == ["results.csv"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("died")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["t.json"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    import socket
    import re

    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
    dead = tmp_path / f".report.{host}-{_dead_pid()}-abc123.tmp"   # a SIGKILLed report's temp dir
    (dead / "sub").mkdir(parents=True)
    live = tmp_path / f".report.{host}-{os.getppid()}-abc123.tmp"  # a running sibling (our parent)
    live.mkdir()
    other = tmp_path / f".other.{host}-{_dead_pid()}-abc123.tmp"  # another target's: not ours to judge
    other.mkdir()
    with atomic_dir(tmp_path / "report") as d:
        (d / "report.md").write_text("x")
    assert not dead.exists() and live.exists() and other.exists()
    assert clean_stale_temps(tmp_path / "other") == [other] and not other.exists()
