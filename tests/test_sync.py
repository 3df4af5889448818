"""CI fails when pivotrl_nb/ is not what nbdev_export makes of the notebooks, or a notebook is not clean."""
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
