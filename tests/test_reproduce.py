"""Smoke runs of the reproduction runner (papermill and execnb backends) and its error reports.

Outputs go to a temporary project root (PIVOTRL_NB_ROOT), never to the real results/ and figures/.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "nbs" / "repro" / "manifest.toml"
SMALL = ["-p", 'models=["tiny-llama"]', "-p", "batch_sizes=[1,2]", "-p", "max_tokens=4", "-p", "repeats=1",
         "-p", 'paths=["loop-fp32"]', "-p", 'pivot_domain=""', "-p", "rollout_prompts=2", "-p", "rollout_n=2",
         "-p", "rollout_tokens=8", "-p", "bandwidth_gib=0.05"]


def cli(tmp_path, *args):
    env = {**os.environ, "PIVOTRL_NB_ROOT": str(tmp_path)}
    cmd = [Path(sys.executable).parent / "pivotrl-nb", "run", "--manifest", str(MANIFEST), *args]
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
                         '"batch_size": 4, "steps": 5}', "-p", 'max_tokens={"gsm_symbolic": 4, "arithmetic": 4, '
                         '"instructions": 4, "humaneval": 8, "arithmetic_small": 4, "instructions_short": 4}']),
    ("ewm_benchmark", ["-p", "n_prompts=2", "-p", "max_new_tokens=40", "-p", "temperatures=[0.7]", "-p", 'perturbations=["lowercase"]',
                       "-p", "n_human=2", "-p", "n_fpr_keys=1", "-p", "oracle=none", "-p", "anchor_sweep=[2]"]),
    ("pivotrl_gate", ["-p", 'bases=["tiny-llama"]', "-p", 'gate_base="tiny-llama"', "-p", "n_train=4", "-p", "n_val=2", "-p", "n_test=2",
                      "-p", "max_turns=1", "-p", "max_tokens=8", "-p", 'sft={"steps": 2, "batch_size": 2, "lr": 0.001}', "-p", "sft_eval_every=1",
                      "-p", 'warmup={"tasks": 4, "eval_every": 1, "max_steps": 2, "batch_size": 2, "lr": 0.001}', "-p", "n_boot=100"]),
    ("mutation_pass", ["-p", 'pillars=["e-value"]']),
    ("sandbox_attacks", ["-p", "timeout=1.0", "-p", 'families=["files", "network"]']),
    ("pivotrl_sweep", ["-p", "temperatures=[1.0, 0.5]", "-p", 'base_model="tiny-llama"', "-p", 'domain="bfcl-compact"', "-p", "n_candidates=6",
                       "-p", "k=2", "-p", "n_val=2", "-p", "eval_max_turns=1",
                       "-p", 'grpo={"steps": 1, "states_per_step": 2, "group_size": 2, "lr": 0.0001, "eval_every": 1}',
                       "-p", 'e2e={"steps": 1, "states_per_step": 1, "group_size": 2, "lr": 0.0001, "max_turns": 1, "eval_every": 1}']),
    ("trainer_speed", ["-p", 'sft_paths=["padded", "bucketed-1"]', "-p", 'base="tiny-llama"', "-p", 'domain="bfcl-compact"',
                       "-p", 'grpo_paths=["padded", "bucketed-1"]', "-p", "steps=1", "-p", "sft_batch=2", "-p", "states=2",
                       "-p", "group_size=2", "-p", "max_tokens=8"]),
    ("grpo_vs_trl", ["-p", "n_states=2", "-p", "group_size=2", "-p", "max_tokens=4", "-p", "steps=1", "-p", "betas=[0.0, 0.04]"]),
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
    assert json.loads((out / "mining.json").read_text())["gate"] == "not measured"
    tables = ["--only", "pivotrl_tables", "-p", 'runs=["pivotrl_compact"]', "-p", 'compute_runs=["pivotrl_compact"]', "-p", "n_boot=100"]
    r = cli(tmp_path, *tables)   # the domain has no gate verdict: the tables refuse it
    assert r.returncode == 1 and "must be on a domain that passed pivotrl_gate" in r.stdout + r.stderr
    r = cli(tmp_path, *tables, "-p", "gated_only=false")
    assert r.returncode == 0, r.stdout + r.stderr
    tables = tmp_path / "results" / "pivotrl_tables" / "cpu"
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
