"""Smoke runs of the reproduction runner (papermill and execnb backends), its error reports, and runs that never
damage published results (overrides, a dirty tree, kill -9, Ctrl-C, two runs at once).

Outputs go to a temporary run folder (--out) or a temporary project root (PIVOTRL_NB_ROOT), never to the real
results/ and figures/.
"""
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "nbs" / "repro" / "manifest.toml"
SMALL = ["-p", 'models=["tiny-llama"]', "-p", "batch_sizes=[1,2]", "-p", "max_tokens=4", "-p", "repeats=1",
         "-p", 'paths=["loop-fp32"]', "-p", 'pivot_domain=""', "-p", "rollout_prompts=2", "-p", "rollout_n=2",
         "-p", "rollout_tokens=8", "-p", "bandwidth_gib=0.05"]


def cli(out, *args, root=None):
    "`pivotrl-nb run` on the real manifest, writing to the run folder `out`, in a project root without results."
    env = {**os.environ, "PIVOTRL_NB_ROOT": str(root or out / "root")}
    cmd = [Path(sys.executable).parent / "pivotrl-nb", "run", "--manifest", str(MANIFEST), "--out", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("backend", ["papermill", "execnb"])
def test_runner_writes_results_manifest_and_executed_notebook(tmp_path, backend):
    r = cli(tmp_path, "--only", "sampler_throughput", "--backend", backend, *SMALL)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "results" / "sampler_throughput" / "cpu"
    table = pd.read_csv(out / "throughput.csv")
    assert table.batch.tolist() == [1, 2] and (table.tokens_per_s > 0).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["max_tokens"] == 4 and manifest["scale"] == "cpu" and manifest["seed"] == 0
    assert manifest["packages"]["transformers"] and manifest["wall_clock_s"] > 0
    executed = json.loads((out / "sampler_throughput.ipynb").read_text())
    tags = [c.get("metadata", {}).get("tags", []) for c in executed["cells"]]
    assert ["injected-parameters"] in tags
    assert (tmp_path / "figures" / "bench_sampler_throughput.png").stat().st_size > 0


def test_wrong_parameter_type_is_one_clear_message(tmp_path):
    r = cli(tmp_path, "--only", "sampler_throughput", "-p", "max_tokens=many")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "pivotrl-nb: error: sampler_throughput.ipynb: parameter 'max_tokens' expects int like 32, got str 'many'"]
    assert not (tmp_path / "results").exists()


def test_unknown_notebook_lists_the_manifest(tmp_path):
    r = cli(tmp_path, "--only", "table9")
    assert r.returncode == 2 and "the manifest has: sampler_throughput" in r.stderr


def test_failing_notebook_names_the_cell_and_error(tmp_path):
    r = cli(tmp_path, "--only", "sampler_throughput", *SMALL, "-p", 'models=["gpt-5"]')
    assert r.returncode == 1
    assert "sampler_throughput.ipynb failed in cell" in r.stdout
    assert "UnknownNameError: unknown model 'gpt-5'; available: smollm2-135m-instruct, tiny-llama" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert (tmp_path / "results" / "sampler_throughput" / "cpu" / "sampler_throughput.ipynb").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_requested_without_gpu(tmp_path):
    r = cli(tmp_path, "--only", "sampler_throughput", *SMALL, "-p", "device=cuda")
    assert r.returncode == 1 and "DeviceError: device='cuda' was requested but this machine has no CUDA GPU" in r.stdout


@pytest.mark.parametrize("name,params", [
    ("ewm_stopping_times", ["-p", "n_sims=100", "-p", "alphas=[0.01, 1e-10]", "-p", "bench_steps=5"]),
    ("ewm_validity", ["-p", "n_sims=200", "-p", "horizon=50"]),
    ("rewards_bfcl_oracle", ["-p", "max_per_category=15"]),
    ("rewards_tau2_oracle", ["-p", "max_write_actions=1", "-p", 'domains=["retail"]']),
    ("hostile_inputs", ["-p", "n_per_family=20", "-p", "n_episodes=2", "-p", "n_pivots=2"]),
    ("envs_overview", ["-p", 'models=["tiny-llama"]', "-p", 'domains=["bfcl-compact"]', "-p", 'n_eval={"compact": 2, "full": 1}',
                       "-p", 'max_turns={"compact": 2, "full": 1}', "-p", "max_tokens=8"]),
    ("ood_base_scores", ["-p", "n=2", "-p", 'tiny_base={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, '
                         '"num_attention_heads": 1, "num_key_value_heads": 1, "vocab_size": 512, "seq_len": 64, '
                         '"batch_size": 4, "steps": 5, "packing": "stream"}', "-p", 'max_tokens={"gsm_symbolic": 4, "arithmetic": 4, '
                         '"instructions": 4, "humaneval": 8, "arithmetic_small": 4, "instructions_short": 4}']),
    ("ewm_benchmark", ["-p", "n_prompts=2", "-p", 'target_name="tiny-llama"', "-p", "max_new_tokens=40", "-p", "temperatures=[0.7]",
                       "-p", 'anchor={"n_layers": 1, "n_texts": 4, "text_tokens": 16, "n_completions": 2, "completion_tokens": 8, '
                       '"steps": 2, "batch_positions": 16, "heldout": 0.5, "eval_every": 1}', "-p", "n_calibration=2",
                       "-p", "calib_classes=[2, 4]", "-p", 'calib_modes=["fixed", "mixture"]', "-p", "calib_warmups=[4]",
                       "-p", "calib_anchor_temperatures=[1.0]", "-p", "replicates=2", "-p", 'perturbations=["lowercase"]',
                       "-p", "n_human=2", "-p", "n_fpr_keys=1", "-p", "oracle=none", "-p", "timing_repeats=2",
                       "-p", "timing_prompts=2", "-p", "timing_tokens=8"]),
    ("pivotrl_gate", ["-p", 'bases=["tiny-llama-retail"]', "-p", 'gate_base="tiny-llama-retail"', "-p", "n_train=4", "-p", "n_val=2",
                      "-p", "n_test=2", "-p", "max_turns=1", "-p", "max_tokens=8", "-p", 'sft={"steps": 2, "batch_size": 2, "lr": 0.001}',
                      "-p", "sft_eval_every=1", "-p", 'warmup={"eval_every": 1, "max_steps": 3, "target": 0.1}', "-p", "n_boot=100"]),
    ("mutation_pass", ["-p", 'pillars=["e-value"]']),
    ("sandbox_attacks", ["-p", "timeout=1.0", "-p", 'families=["files", "network"]']),
    ("pivotrl_sweep", ["-p", "temperatures=[1.0, 0.5]", "-p", "lrs=[0.0001, 0.00003]", "-p", 'base_model="tiny-llama"', "-p", 'domain="bfcl-compact"', "-p", "n_candidates=6",
                       "-p", "k=2", "-p", "n_val=2", "-p", "eval_max_turns=1",
                       "-p", 'grpo={"steps": 1, "states_per_step": 2, "group_size": 2, "lr": 0.0001, "eval_every": 1}',
                       "-p", 'e2e={"steps": 1, "states_per_step": 1, "group_size": 2, "lr": 0.0001, "max_turns": 1, "eval_every": 1}']),
    ("trainer_speed", ["-p", 'sft_paths=["padded", "bucketed-1"]', "-p", 'base="tiny-llama"', "-p", 'domain="bfcl-compact"',
                       "-p", 'grpo_paths=["padded", "bucketed-1"]', "-p", "steps=1", "-p", "sft_batch=2", "-p", "states=2",
                       "-p", "group_size=2", "-p", "max_tokens=8"]),
    ("grpo_vs_trl", ["-p", "n_states=2", "-p", "group_size=2", "-p", "max_tokens=4", "-p", "steps=1", "-p", "betas=[0.0, 0.04]"]),
    ("ewm_anchor", ["-p", "steps=2", "-p", 'target_name="tiny-llama"', "-p", "n_layers=1"]),
])
def test_every_repro_notebook_runs_at_a_tiny_scale(tmp_path, name, params):
    r = cli(tmp_path, "--only", name, *params)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "results" / name / "cpu"
    key, value = params[1].split("=")
    assert json.loads((out / "manifest.json").read_text())["params"][key] == json.loads(value)
    assert (out / "summary.md").read_text().startswith("### ")


PIVOTRL_TINY = ["-p", "n_candidates=6", "-p", 'base_model="tiny-llama"', "-p", 'domain="bfcl-compact"', "-p", "k=2", "-p", "max_tokens=128",
                "-p", "n_eval=2", "-p", "n_val=2", "-p", 'sft={"steps": 2, "batch_size": 2, "lr": 0.001, "eval_every": 1}',
                "-p", 'grpo={"steps": 1, "states_per_step": 2, "group_size": 2, "lr": 0.0001, "eval_every": 1}',
                "-p", 'e2e={"steps": 1, "states_per_step": 1, "group_size": 2, "lr": 0.0001, "max_turns": 1, "eval_every": 1}',
                "-p", "eval_max_turns=1", "-p", 'methods=["sft", "pivotrl", "e2e"]', "-p", 'first_seed_methods=["random+strict"]',
                "-p", "ood_n=2", "-p", "n_boot=100"]


def test_pivotrl_domain_run_and_tables_at_a_tiny_scale(tmp_path):
    r = cli(tmp_path, "--only", "pivotrl_compact", *PIVOTRL_TINY)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "results" / "pivotrl_compact" / "cpu"
    assert json.loads((out / "manifest.json").read_text())["params"]["n_candidates"] == 6
    eps = pd.read_csv(out / "final_episodes.csv")
    assert {"base", "sft", "e2e", "random+strict"} <= set(eps.method) and set(eps.groupby("method").size()) <= {2, 4}
    chosen = pd.read_csv(out / "checkpoints.csv").query("seed == 0").set_index("method")   # the best validation step
    log = pd.read_csv(out / "training_log.csv")
    sft_val = log[(log.method == "sft") & (log.seed == 0) & (log.step > 0)].set_index("step").val_success
    assert chosen.loc["sft", "step"] == sft_val.idxmax() and chosen.loc["sft", "val_success"] == sft_val.max()
    mining = json.loads((out / "mining.json").read_text())
    assert mining["gate"] == "not measured" and re.fullmatch("[0-9a-f]{16}", mining["base_weights"])
    curve = pd.read_csv(out / "ood_curve.csv")   # OOD at every validation checkpoint, from the base's step 0
    sft_curve = curve[(curve.method == "sft") & (curve.seed == 0) & (curve.task == "mean")].set_index("step")
    assert sft_curve.index.tolist() == [0, 1, 2] and (sft_curve.val_success[sft_val.index] == sft_val).all()
    assert sft_curve.change[0] == 0 and (out / "ood_matched.csv").exists() == ("pivotrl" in set(eps.method))
    tables = ["--only", "pivotrl_tables", "-p", 'runs=["pivotrl_compact"]', "-p", 'compute_runs=["pivotrl_compact"]', "-p", "n_boot=100"]
    r = cli(tmp_path / "t", *tables, root=tmp_path)   # the domain has no gate verdict: the tables refuse it
    assert r.returncode == 1 and "must be on a domain that passed pivotrl_gate" in r.stdout + r.stderr
    r = cli(tmp_path / "t", *tables, "-p", "gated_only=false", root=tmp_path)   # reads the run above as published
    assert r.returncode == 0, r.stdout + r.stderr
    tables = tmp_path / "t" / "results" / "pivotrl_tables" / "cpu"
    t1 = pd.read_csv(tables / "table1.csv")
    assert t1["domain (ours)"].tolist() == ["bfcl-compact", "mean"] and t1["paper SFT"].tolist() == [13.75, 27.77]
    assert (tables / "summary.md").read_text().startswith("### PivotRL tables")


def test_pivotrl_tables_names_a_missing_run(tmp_path):
    r = cli(tmp_path, "--only", "pivotrl_tables")
    assert r.returncode == 1 and "pivotrl-nb run --scale cpu --only pivotrl_compact" in r.stdout + r.stderr


def test_update_readme_splices_the_summaries_between_the_markers(tmp_path, monkeypatch):
    from pivotrl_nb.reproduce import README_END, README_START, load_manifest, update_readme
    monkeypatch.setenv("PIVOTRL_NB_ROOT", str(tmp_path))
    specs = load_manifest(MANIFEST)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{README_START}\nstale\n{README_END}\n\nafter\n")
    for name, text in [("ewm_validity", "### B"), ("sampler_throughput", "### A\n\nrow"), ("no_such_run", "### C")]:
        (tmp_path / "results" / name / "cpu").mkdir(parents=True)
        (tmp_path / "results" / name / "cpu" / "summary.md").write_text(text + "\n")
    assert update_readme(specs, readme)
    # manifest order (sampler_throughput before ewm_validity), summaries of unknown runs ignored, text outside kept
    assert readme.read_text() == f"# title\n\nintro\n\n{README_START}\n### A\n\nrow\n\n### B\n{README_END}\n\nafter\n"
    readme.write_text("no markers\n")
    assert not update_readme(specs, readme) and readme.read_text() == "no markers\n"


def test_readme_flags_exactly_the_stale_runs():
    """Every saved run whose executed notebook's code differs from its notebook today is flagged in the README."""
    from pivotrl_nb.reproduce import SCALES, load_manifest, stale_flag, stale_runs
    specs, readme = load_manifest(MANIFEST), (ROOT / "README.md").read_text()
    stale = set(stale_runs(specs))
    for name in specs:
        for scale in SCALES:
            if not (ROOT / "results" / name / scale / "summary.md").exists(): continue
            flagged = stale_flag(name, scale) in readme
            assert flagged == ((name, scale) in stale), f"{name} ({scale}): run `pivotrl-nb readme`"


def test_a_changed_notebook_makes_its_run_stale(tmp_path, monkeypatch):
    from pivotrl_nb.reproduce import README_END, README_START, NotebookSpec, stale_flag, stale_runs, update_readme
    monkeypatch.setenv("PIVOTRL_NB_ROOT", str(tmp_path))
    src = tmp_path / "nb.ipynb"
    cell = lambda text, tags=(): {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": text,
                                  "outputs": [], "execution_count": None}
    nb = lambda *cells: json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    src.write_text(nb(cell("x = 1", ["parameters"]), cell("print(x)")))
    out = tmp_path / "results" / "demo" / "cpu"; out.mkdir(parents=True)
    (out / "summary.md").write_text("### Demo\n\nrow\n")
    (out / "demo.ipynb").write_text(nb(cell("x = 1", ["parameters"]), cell("x = 2", ["injected-parameters"]),
                                       cell("print(x)")))
    specs = {"demo": NotebookSpec("demo", src, "", {})}
    assert stale_runs(specs) == []                       # injected parameters do not count
    src.write_text(nb(cell("x = 1", ["parameters"]), cell("print(x + 1)")))
    assert stale_runs(specs) == [("demo", "cpu")]
    readme = tmp_path / "README.md"; readme.write_text(f"{README_START}\n{README_END}\n")
    update_readme(specs, readme)
    assert readme.read_text() == f"{README_START}\n### Demo\n\n{stale_flag('demo', 'cpu')}\n\nrow\n{README_END}\n"


# Runs that never damage published results: a throwaway project (a git checkout) with one tiny notebook, `demo`.
DEMO = """import os, time
from pathlib import Path
from pivotrl_nb.core import atomic_path, figures_dir, project_root, results_dir, save_json
t0 = time.time()
out = results_dir("demo", scale)
with atomic_path(figures_dir() / "demo.png") as tmp: tmp.write_text(f"figure of x = {x}")
(out / "summary.md").write_text(f"### Demo\\n\\nx = {x}\\n")
time.sleep(sleep)
assert x != 13, "x is unlucky"
save_json({"x": x, "outputs": ["results/demo/cpu/summary.md", "figures/demo.png"]}, out / "manifest.json")
with open(project_root().parent / "times.txt", "a") as f: f.write(f"{t0} {time.time()}\\n")
"""
PUBLISHED = {"results/demo/cpu/summary.md": "### Demo\n\nx = 1 (published)\n", "figures/demo.png": "published figure",
             "results/demo/cpu/manifest.json": '{"status": "ok", "wall_clock_total_s": 3.0}\n',
             "README.md": "# demo\n<!-- results:start -->\n### Demo\n\nx = 1 (published)\n<!-- results:end -->\n"}


def demo_project(tmp_path, sleep=0.0, x=1) -> Path:
    "A clean git checkout whose manifest runs `demo` with `x` (13 fails), and a published run of it with x = 1."
    root = tmp_path / "root"
    (root / "nbs" / "repro").mkdir(parents=True)
    cell = lambda src, tags=(): {"cell_type": "code", "id": f"c{len(tags)}", "metadata": {"tags": list(tags)},
                                 "source": src, "outputs": [], "execution_count": None}
    nb = {"cells": [cell("scale = 'cpu'\nx = 0\nsleep = 0.0\n", ["parameters"]), cell(DEMO)], "nbformat": 4,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat_minor": 5}
    (root / "nbs" / "repro" / "demo.ipynb").write_text(json.dumps(nb))
    (root / "nbs" / "repro" / "manifest.toml").write_text(f'[demo]\nnotebook = "demo.ipynb"\n'
                                                          f'[demo.cpu]\nx = {x}\nsleep = {sleep}\n')
    (root / "settings.ini").write_text("[DEFAULT]\n")
    for name, text in PUBLISHED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True); (root / name).write_text(text)
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=root, check=True,
                                    capture_output=True)
    git("init", "-q"); git("add", "-A"); git("commit", "-qm", "published")
    return root


def demo_run(root, *args, wait=True):
    "`pivotrl-nb run` (or `pivotrl-nb ARGS` for list/readme) in the demo project, umask 022, its own session."
    env = {**os.environ, "PIVOTRL_NB_ROOT": str(root), "PIVOTRL_NB_CACHE": str(root.parent / "cache")}
    cmd = [Path(sys.executable).parent / "pivotrl-nb", *(args if args[:1] in (("list",), ("readme",)) else
                                                         ("run", *args))]
    # Ctrl-C reaches the runner as at a terminal even when pytest itself was started with `&` (SIGINT ignored)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=0o022,
                         start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if not wait: return p
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def published(root) -> dict:
    "Every published file (results/, figures/, README.md) with its bytes and mode."
    files = [root / "README.md", *(p for d in ("results", "figures") for p in (root / d).rglob("*") if p.is_file())]
    return {p.relative_to(root).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in files}


def wait_for(path: Path, timeout=60):
    t = time.time()
    while not path.exists():
        assert time.time() - t < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["override", "dirty tree", "failure"])
def test_a_non_canonical_or_failed_run_leaves_published_results_byte_identical(tmp_path, how):
    root = demo_project(tmp_path, x=13 if how == "failure" else 1)   # the failure: a canonical run that fails
    before = published(root)
    if how == "dirty tree": (root / "settings.ini").write_text("[DEFAULT]\nedited = 1\n")
    r = demo_run(root, "--out", str(tmp_path / "run"), *(["-p", "x=2"] if how == "override" else []))
    assert r.returncode == (1 if how == "failure" else 0), r.stdout + r.stderr
    if how == "failure": assert "canonical, publishes on success" in r.stdout and "x is unlucky" in r.stdout
    else: assert f"not canonical ({'the git tree is dirty' if how == 'dirty tree' else 'parameters differ'}" in r.stdout
    assert str(tmp_path / "run" / "results" / "demo" / "cpu") in r.stdout   # says where the run went
    assert published(root) == before
    manifest = json.loads((tmp_path / "run" / "results" / "demo" / "cpu" / "manifest.json").read_text())
    assert manifest["status"] == ("failed" if how == "failure" else "ok")
    assert manifest["canonical"] is (how == "failure")
    assert manifest["git_dirty"] is (how == "dirty tree") and manifest["backend"] == "papermill"
    assert manifest["wall_clock_total_s"] > 0


def test_a_canonical_run_publishes_everything_with_normal_permissions(tmp_path):
    root = demo_project(tmp_path)
    r = demo_run(root)
    assert r.returncode == 0 and "demo (cpu): canonical, publishes on success" in r.stdout, r.stdout + r.stderr
    assert "published in results/demo/cpu/" in r.stdout and "last 3 s" in r.stderr   # the last measured duration
    files = published(root)
    assert files["results/demo/cpu/summary.md"][0] == b"### Demo\n\nx = 1\n"
    assert files["figures/demo.png"][0] == b"figure of x = 1" and b"x = 1\n<!--" in files["README.md"][0]
    assert "results/demo/cpu/demo.ipynb" in files and not list((root / "results" / ".staging").iterdir())
    executed = files["results/demo/cpu/demo.ipynb"][0].decode()                  # published without machine paths
    assert json.loads(executed)["metadata"]["papermill"]["input_path"] == "nbs/repro/demo.ipynb"
    assert json.loads(executed)["metadata"]["papermill"]["output_path"] == "results/demo/cpu/demo.ipynb"
    assert str(root) not in executed and str(tmp_path) not in executed
    assert {f: oct(mode) for f, (_, mode) in files.items() if mode != 0o644} == {}
    m = json.loads(files["results/demo/cpu/manifest.json"][0])
    assert (m["status"], m["canonical"], m["git_dirty"], m["backend"]) == ("ok", True, False, "papermill")
    listing = demo_run(root, "list").stdout
    assert f"cpu: {m['wall_clock_total_s']:.0f} s" in listing and "gpu: never measured" in listing
    assert f"make reproduce (all 1 at cpu scale): {m['wall_clock_total_s']:.0f} s as last measured" in listing


@pytest.mark.parametrize("point", ["run folder made", "notebook half done"])
def test_kill_9_leaves_published_results_intact(tmp_path, point):
    root = demo_project(tmp_path, sleep=30)
    before = published(root)
    out = tmp_path / "run" / "results" / "demo" / "cpu"
    p = demo_run(root, "--out", str(tmp_path / "run"), wait=False)
    wait_for(out / ("RUNNING" if point == "run folder made" else "summary.md"))
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert published(root) == before
    assert (out / "RUNNING").read_text().startswith("pid ")   # the killed run is marked unfinished


def test_a_publication_cut_short_is_dropped_or_finished_next_time(tmp_path, monkeypatch):
    """kill -9 while staging (before READY) or between the renames of the swap: the next runner call sorts it out."""
    from pivotrl_nb.core import save_json
    from pivotrl_nb.reproduce import stage
    root = demo_project(tmp_path)
    monkeypatch.setenv("PIVOTRL_NB_ROOT", str(root))
    before = published(root)
    def finished_run():
        out = tmp_path / "run" / "results" / "demo" / "cpu"; out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text("### Demo\n\nx = 1 (new)\n")
        (tmp_path / "run" / "figures").mkdir(exist_ok=True)
        (tmp_path / "run" / "figures" / "demo.png").write_text("new")
        save_json({"status": "ok", "outputs": ["figures/demo.png"]}, out / "manifest.json")
        return out
    (stage(finished_run(), "demo", "cpu") / "READY").unlink()    # killed while staging
    assert demo_run(root, "readme").returncode == 0 and published(root) == before
    st = stage(finished_run(), "demo", "cpu")
    (root / "results" / "demo" / "cpu").rename(st / "replaced")   # killed between the two renames
    assert demo_run(root, "readme").returncode == 0
    after = published(root)
    assert after["results/demo/cpu/summary.md"][0] == b"### Demo\n\nx = 1 (new)\n"
    assert after["figures/demo.png"][0] == b"new" and b"x = 1 (new)" in after["README.md"][0]
    assert not (root / "results" / ".staging").exists() or not list((root / "results" / ".staging").iterdir())


def test_ctrl_c_ends_with_one_line_and_leaves_published_results_intact(tmp_path):
    root = demo_project(tmp_path, sleep=30)
    before = published(root)
    out = tmp_path / "run" / "results" / "demo" / "cpu"
    p = demo_run(root, "--out", str(tmp_path / "run"), wait=False)
    wait_for(out / "summary.md")
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stdout + stderr
    assert stderr.strip().splitlines()[-1] == (f"pivotrl-nb: interrupted during demo (cpu); partial run in {out}; "
                                                "published results untouched")
    assert "Traceback" not in stdout + stderr and "Error" not in stdout + stderr
    assert published(root) == before
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted" and not (out / "RUNNING").exists()


def test_two_runs_of_one_notebook_take_turns(tmp_path):
    root = demo_project(tmp_path, sleep=1.5)
    runs = [demo_run(root, wait=False) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], results
    assert any("waiting for another run holding" in out for out, _ in results)
    (_, first_end), (second_start, _) = sorted(tuple(map(float, line.split())) for line in
                                               (tmp_path / "times.txt").read_text().splitlines())
    assert first_end <= second_start   # the second notebook started after the first had finished
    assert published(root)["results/demo/cpu/summary.md"][0] == b"### Demo\n\nx = 1\n"


@pytest.mark.parametrize("param,notebook,why", [
    ("scale=gpu", "sampler_throughput", "use --scale"),
    ("name=mine", "pivotrl_bfcl", "results go to results/<manifest entry>/")])
def test_parameters_the_runner_sets_are_refused(tmp_path, param, notebook, why):
    r = cli(tmp_path, "--only", notebook, "-p", param)
    key = param.split("=")[0]
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"pivotrl-nb: error: -p cannot set parameter {key!r}: the runner sets it ({why})"]
    assert not (tmp_path / "results").exists()
