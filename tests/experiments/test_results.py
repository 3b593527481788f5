"""`mxlab reproduce`: every quick result regenerates its committed CSV byte for byte and its meta
JSON field for field (except where and when the regeneration ran), and every README table names
its committed file."""

import json
import re
from pathlib import Path

import pytest

from experiments.results import RESULTS, RESULTS_DIR, reproduce

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = ("areas_commit", "areas_on", "written_at_commit")  # where/when the quick regeneration ran


@pytest.mark.parametrize("name", [n for n, r in RESULTS.items() if r.quick])
def test_quick_result_regenerates_the_committed_files(name, tmp_path):
    reproduce([name], tmp_path, log=lambda *_: None)
    for f in RESULTS[name].files:
        new, old = tmp_path / f, RESULTS_DIR / f
        assert old.is_file(), f"{f} is not committed: run `mxlab reproduce {name}`"
        if f.endswith(".json"):
            a, b = json.loads(new.read_text()), json.loads(old.read_text())
            assert {k: v for k, v in a.items() if k not in VOLATILE} == \
                   {k: v for k, v in b.items() if k not in VOLATILE}, f"{f}: run `mxlab reproduce {name}`"
            assert {"configs", "rows"} & set(a), f"{f} lacks the resolved configs"
        else:
            assert new.read_bytes() == old.read_bytes(), f"{f}: run `mxlab reproduce {name}`"


def test_slow_results_need_rerun(tmp_path):
    said = []
    assert reproduce(["smollm2_cpu_table"], tmp_path, log=said.append) == []
    assert "--rerun" in said[0] and not any(tmp_path.iterdir())


def test_readme_names_the_file_of_every_result():
    text = (ROOT / "README.md").read_text()
    for name, r in RESULTS.items():
        if (RESULTS_DIR / r.files[0]).is_file():
            assert re.search(rf"docs/results/{re.escape(r.files[0])}", text), f"README does not cite {r.files[0]}"
            assert f"mxlab reproduce {name}" in text, f"README does not give the command for {name}"
