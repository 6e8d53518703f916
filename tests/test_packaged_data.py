"""The data sets ship with the package (problems/data/): a clone or an install with nothing beside
it loads GSM8K, BBH, MultiArith, AQuA and TSPLIB without --data-dir or $LLMOPT_DATA."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.resources
from pathlib import Path

import pytest

from llmopt.cli import main
from problems.data import DataError, data_dir, packaged, tsplib_file
from problems.prompt_optimization.data import bbh_tasks, load_task
from problems.tsp.instances import read_tour, read_tsplib, tour_length

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "problems" / "data"
SHARED = ROOT.parent / "shared" / "data"  # where the data lived before it was packaged (absent in a clone)
# sha256 over "relative path\0sha256(file)\n" of every data file, sorted; README.md is left out (it
# says where this copy comes from), so is the Python.
DIGEST = "85de3882981ca491c816b8c5642757d5f911c3a1168d5dfba67e82c3ca7ffd11"


def data_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.name != "README.md" and p.suffix not in (".py", ".pyc"))


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel in data_files(root):
        h.update(rel.encode() + b"\0" + hashlib.sha256((root / rel).read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPT_DATA", raising=False)


def test_the_default_is_the_packaged_copy(no_env: None) -> None:
    assert data_dir() == packaged() == Path(str(importlib.resources.files("problems.data")))
    assert packaged() == PACKAGED  # this checkout's copy (cwd first on sys.path)
    nav = load_task("bbh/navigate")  # as `llmopt run prompt --task bbh/navigate` with no --data-dir
    assert (len(nav.train), len(nav.test), nav.kind) == (50, 200, "bool")
    assert len(bbh_tasks(data_dir())) == 27
    gsm = load_task("gsm8k")
    assert (len(gsm.train), len(gsm.test)) == (261, 1319)
    assert len(load_task("multiarith").test) == 600 and len(load_task("aqua").test) == 254


def test_tsplib_instances_by_name(no_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, optimum in [("eil51", 426), ("berlin52.tsp", 7542)]:
        path = tsplib_file(name)
        assert path.parent == PACKAGED / "tsplib"
        inst = read_tsplib(path)
        assert tour_length(inst.dist, read_tour(path.with_suffix(".opt.tour"), inst.n)) == optimum
    assert tsplib_file("nope") == Path("nope")  # not a name we know: the reader's error names it
    (tmp_path / "tsplib").mkdir()
    own = tmp_path / "tsplib" / "eil51.tsp"
    own.write_text("")
    assert tsplib_file(own) == own  # a path is a path
    monkeypatch.setenv("LLMOPT_DATA", str(tmp_path))  # a name is looked up in $LLMOPT_DATA when set
    assert tsplib_file("eil51") == own
    monkeypatch.setenv("LLMOPT_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"gone \(\$LLMOPT_DATA\) does not exist"):
        tsplib_file("eil51")


def test_run_tsp_names_a_missing_instance_in_one_line(no_env: None, tmp_path: Path, capsys) -> None:
    assert main(["run", "tsp", "--tsplib", "eil5", "--proposer", "random", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read TSPLIB file eil5" in err and len(err.splitlines()) == 1


def test_the_packaged_files_are_the_published_ones() -> None:
    assert len(data_files(PACKAGED)) == 35
    assert digest(PACKAGED) == DIGEST
    readme = (PACKAGED / "README.md").read_text()
    assert "package's copy" in readme and "Universität Heidelberg" in readme and "(MIT)" in readme


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/data beside the repository")
def test_the_packaged_files_equal_shared_data() -> None:
    assert data_files(PACKAGED) == data_files(SHARED)
    for rel in data_files(SHARED):
        assert (PACKAGED / rel).read_bytes() == (SHARED / rel).read_bytes(), rel


def test_pyproject_installs_every_data_file() -> None:
    """Each data file matches a package-data pattern, so `pip install .` (not only -e) carries it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["problems.data"]
    for rel in [*data_files(PACKAGED), "README.md"]:
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
