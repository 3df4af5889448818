"""CI fails when pivotrl_nb/ is not what nbdev_export makes of the notebooks, or a notebook is not clean."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _copy_project(dst: Path):
    for name in ("settings.ini", "setup.py", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "nbs", dst / "nbs")
    shutil.copytree(ROOT / "pivotrl_nb", dst / "pivotrl_nb", ignore=shutil.ignore_patterns("__pycache__"))


def _files(root: Path, sub: str, pattern: str) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / sub).rglob(pattern))
            if ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


def test_export_in_sync(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_export"], cwd=tmp_path, check=True)
    got, want = _files(tmp_path, "pivotrl_nb", "*.py"), _files(ROOT, "pivotrl_nb", "*.py")
    stale = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    assert not stale, f"pivotrl_nb/ differs from the notebooks' export; run `make sync` and commit: {stale}"


def test_notebooks_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_clean"], cwd=tmp_path, check=True)
    got, want = _files(tmp_path, "nbs", "*.ipynb"), _files(ROOT, "nbs", "*.ipynb")
    dirty = sorted(k for k in want if got.get(k) != want[k])
    assert not dirty, f"notebooks not clean (outputs/metadata); run `make sync` and commit: {dirty}"


# Committed outputs (issue #16): library notebooks read well unexecuted, no notebook shows where it ran.
MACHINE_PATH = re.compile(r"/(?:work|root|home|tmp)/")


def _strings(o, where=""):
    "(where, string) for every string in outputs or metadata; base64 images skipped."
    if isinstance(o, str): yield where, o
    elif isinstance(o, list):
        for v in o: yield from _strings(v, where)
    elif isinstance(o, dict):
        for k, v in o.items():
            if not (k.startswith("image/") and not k.endswith("svg+xml")): yield from _strings(v, where)


def _shown(nb: dict):
    "(where, string) for everything a notebook shows besides its sources: outputs and metadata."
    yield from _strings(nb.get("metadata", {}), "metadata")
    for k, c in enumerate(nb["cells"]):
        yield from _strings(c.get("metadata", {}), f"cell {k} metadata")
        yield from _strings(c.get("outputs", []), f"cell {k}")


def _machine_paths(nb: dict) -> list[str]:
    return [f"{where}: {s[max(0, m.start() - 30):m.end() + 40]!r}" for where, s in _shown(nb)
            for m in MACHINE_PATH.finditer(s)]


def test_scrub_rewrites_crafted_outputs():
    "The scrubs on an executed notebook made up of everything they must catch (and what they must leave)."
    from pivotrl_nb.outputs import scrub_executed, tidy_outputs, scrub_paths
    home = str(Path.home())
    warn = (f"{home}/proj/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. "
            "Please update jupyter and ipywidgets.\n  from .autonotebook import tqdm as notebook_tqdm\n")
    outs = [{"output_type": "stream", "name": "stderr", "text": [warn, "/work/wt-x/.venv/lib/python3.11/site-packages/"
                                                                       "p/main.py:5: UserWarning: w\n"]},
            {"output_type": "stream", "name": "stdout", "text": ["saved /work/wt-x/figures/f.png\n", "z" * 50_000]},
            {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.jupyter.widget-view+json":
                                                                     {"model_id": "1"}, "text/plain": ["0%"]}},
            {"output_type": "execute_result", "execution_count": 4, "metadata": {}, "data": {
                "text/plain": [f"PosixPath('{home}/.cache/pivotrl-nb/runs/20260101-000000-1/results/a/cpu/t.csv')"],
                "image/png": "iVBORw0KGgo/tmp/+/root/"}},
            {"output_type": "stream", "name": "stdout", "text": ["/tmp/tmpab_12xyz/x.json\n"]}]
    nb = {"metadata": {"papermill": {"input_path": "/work/wt-x/nbs/repro/a.ipynb",
                                     "output_path": "/work/wt-x/results/a/cpu/a.ipynb"}},
          "cells": [{"cell_type": "code", "metadata": {}, "source": "print('/work/wt-x')", "outputs": outs}]}
    assert len(_machine_paths(nb)) == 7 and "IProgress" in json.dumps(nb)     # the check sees every one
    pub = scrub_executed(nb)
    assert _machine_paths(pub) == [] and "IProgress" not in json.dumps(pub)
    assert pub["metadata"]["papermill"] == {"input_path": "nbs/repro/a.ipynb", "output_path": "results/a/cpu/a.ipynb"}
    got = pub["cells"][0]["outputs"]
    assert [o["output_type"] for o in got] == ["stream", "stream", "execute_result", "stream"]    # widget dropped
    assert got[0]["text"] == ["<site-packages>/p/main.py:5: UserWarning: w\n"]                   # the run's stderr
    assert got[1]["text"][0] == "saved figures/f.png\n" and len(got[1]["text"][1]) == 50_000      # nothing cut
    assert got[2]["data"] == {"text/plain": ["PosixPath('results/a/cpu/t.csv')"],
                              "image/png": "iVBORw0KGgo/tmp/+/root/"}                            # image untouched
    assert got[3]["text"] == ["<tmp>/x.json\n"]
    assert pub["cells"][0]["source"] == "print('/work/wt-x')"                                    # code as run
    lib = scrub_paths(tidy_outputs(nb, max_chars=1_000), ["/work/wt-x"])["cells"][0]["outputs"]
    assert [o["output_type"] for o in lib] == ["stream", "execute_result", "stream"]            # no stderr, widget
    assert len("".join(lib[0]["text"])) < 1_200 and "output cut by `pivotrl-nb outputs`" in lib[0]["text"][-1]
    assert lib[0]["text"][0] == "saved figures/f.png\n" and lib[0]["text"][1].startswith("z" * 900)
