"""Command line: user errors are one line with exit code 2; commands produce what they promise."""

import json
import subprocess
import sys

import pytest

from diffmech.cli import main
from diffmech.config import apply_overrides
from diffmech.errors import ConfigError

GOOD = """
[setting]
kind = "single_item"
priors = [{ dist = "uniform", low = 0.0, high = 1.0 }, { dist = "uniform", low = 0.0, high = 2.0 }]

[mechanism]
kind = "regretnet"
hidden = [16]

[train]
steps = 10
batch = 64
train_size = 256
"""

BAD = {
    "unknown distribution": (GOOD.replace('dist = "uniform", low = 0.0, high = 2.0', 'dist = "cauchy"'), "unknown distribution 'cauchy'"),
    "negative width": (GOOD.replace("low = 0.0, high = 2.0", "low = 2.0, high = 1.0"), "low < high"),
    "negative hidden width": (GOOD.replace("hidden = [16]", "hidden = [16, -4]"), "hidden"),
    "unknown mechanism": (GOOD.replace('kind = "regretnet"', 'kind = "regretnot"'), "unknown mechanism kind"),
    "unknown setting": (GOOD.replace('kind = "single_item"', 'kind = "double_item"'), "unknown setting kind"),
    "unknown train key": (GOOD + "stepz = 3\n", "unknown key(s) in [train]: stepz"),
    "batch not dividing": (GOOD.replace("train_size = 256", "train_size = 100"), "multiple of train.batch"),
    "malformed toml": (GOOD.replace("[train]", "[train"), "not valid TOML"),
    "too many bidders": (GOOD.replace("priors = [", 'prior = { dist = "uniform", low = 0.0, high = 1.0 }\nn_agents = 21\nx = [').replace("]\n\n[mech", "]\n\n[mech"), "between 1 and 20"),
    "negative lr": (GOOD + "lr = -0.1\n", "train.lr must be a positive"),
    "no mechanism": (GOOD.split("[mechanism]")[0], "no [mechanism] table"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_one_line_exit_2_nothing_written(name, tmp_path, capsys):
    text, needle = BAD[name]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    code = main(["train", str(cfg), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffmech: error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err
    assert not out.exists()  # nothing written for a bad config


def test_missing_config_and_bad_set(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    assert main(["train", str(cfg), "--set", "setting.priors.5.high=3"]) == 2
    assert "not an index" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "novalue"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_eval_of_untrained_config_says_train_first(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    assert main(["eval", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "must be trained first" in err and len(err.strip().splitlines()) == 1


def test_process_level_error_has_no_traceback(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD["negative width"][0])
    proc = subprocess.run([sys.executable, "-m", "diffmech.cli", "train", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bad_flag = subprocess.run([sys.executable, "-m", "diffmech.cli", "eval"], capture_output=True, text=True)
    assert bad_flag.returncode == 2 and bad_flag.stderr.count("\n") == 1


def test_overrides_with_list_indices_and_toml_values():
    cfg = {"setting": {"priors": [{"high": 1.0}, {"high": 1.0}]}, "train": {}}
    out = apply_overrides(cfg, ["setting.priors.1.high=3", "train.steps=500", "mechanism.hidden=[8, 8]", "train.method=penalty"])
    assert out["setting"]["priors"][1]["high"] == 3
    assert out["train"]["steps"] == 500
    assert out["mechanism"]["hidden"] == [8, 8]
    assert out["train"]["method"] == "penalty"
    assert cfg["train"] == {}  # the input is not modified
    with pytest.raises(ConfigError):
        apply_overrides(cfg, ["setting.priors.x.high=3"])


def test_eval_analytic_config_json_and_compare(tmp_path, capsys):
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        '[setting]\nkind = "single_item"\npriors = [{ dist = "uniform", low = 2.0, high = 4.0 }, { dist = "uniform", low = 1.0, high = 2.0 }]\n'
        '[mechanism]\nkind = "myerson"\n'
    )
    assert main(["eval", str(cfg), "--json", "--samples", "2000", "--grid-points", "200", "--attack-steps", "10"]) == 0
    m = json.loads(capsys.readouterr().out)
    # Deb–Pai Example 1, Myerson revenue 13/6 (Monte Carlo: 4 standard errors)
    assert abs(m["revenue"] - 13 / 6) < 4 * m["revenue_se"]
    assert m["regret_max"] < 1e-5 and m["benchmarks"]["second_price_best_reserve"] == pytest.approx(2.0, abs=1e-6)
    sp = tmp_path / "sp.toml"
    sp.write_text(cfg.read_text().replace('kind = "myerson"', 'kind = "first_price"'))
    assert main(["compare", str(cfg), str(sp), "--samples", "1000", "--grid-points", "100", "--attack-steps", "5", "--plot", str(tmp_path / "bars.png")]) == 0
    out = capsys.readouterr().out
    assert "myerson" in out and "first_price" in out
    assert (tmp_path / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_then_eval_checkpoint_with_plot(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD.replace("[train]", "[eval]\nsamples = 500\ngrid_points = 100\nattack_steps = 5\n\n[train]"))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
    for name in ("weights.eqx", "config.toml", "manifest.json", "metrics.json", "history.json", "training.png", "maps.png"):
        assert (out / name).exists(), name
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--samples", "300", "--plot"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["samples"] == 300 and "train_regret_mean" in m and m["figures"]


def test_list_names_every_registered_kind(capsys):
    from diffmech.mechanisms import MECHANISMS
    from diffmech.priors import PRIORS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list(MECHANISMS) + list(PRIORS) + ["single_item"]:
        assert name in out


def test_runs_are_never_overwritten_or_deleted_by_accident(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--no-eval"]) == 0
    # a published copy (no resume state) is not silently retrained either
    import shutil

    published = tmp_path / "published"
    shutil.copytree(run, published, ignore=shutil.ignore_patterns("resume"))
    before = {p.name: p.read_bytes() for p in published.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(published), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    # demo refuses to replace a directory it did not write, and a plain file
    assert main(["demo", "--out", str(published), "--no-progress"]) == 2
    assert main(["demo", "--out", str(cfg), "--no-progress"]) == 2
    assert "not written by 'diffmech demo'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in published.iterdir() if p.is_file()} == before
    assert cfg.read_text() == GOOD


def test_checkpoint_eval_rejects_setting_overrides_and_non_string_kinds(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--no-eval"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--set", "setting.priors.0.high=5.0"]) == 2
    assert "only eval.* keys" in capsys.readouterr().err
    for key in ("setting.kind", "mechanism.kind", "setting.priors.0.dist"):
        assert main(["train", str(cfg), "--set", f"{key}=[1]", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "unknown" in err


def test_lp_command_solves_both_models_and_rejects_several_bidders(tmp_path, capsys):
    """`diffmech lp`: 1 buyer × 2 items iid U[0,1] on a 12-point grid — the heterogeneous and the
    identical-objects optima are equal (B–M Theorem 2 on a permutation-closed grid), the identical
    LP has C(13, 2) = 78 sorted types against 144, and the optimum is above the Manelli–Vincent value
    0.549201 (the midpoint grid overstates it and comes down as it is refined)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[setting]\nkind = "multi_item"\nprior = { dist = "uniform", low = 0.0, high = 1.0 }\nn_agents = 1\nn_items = 2\n'
                   '[mechanism]\nkind = "manelli_vincent"\n')
    assert main(["lp", str(cfg), "--points", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["heterogeneous_revenue"] - out["identical_revenue"]) < 1e-7
    assert (out["heterogeneous_types"], out["identical_types"]) == (144, 78)
    assert 0.549201 < out["revenue"] < 0.62 and out["rank_preserving"]  # symmetrised IC optimum (Theorem 1)
    assert main(["lp", str(cfg), "--points", "12", "--json", "--set", 'setting.valuation="unit_demand"']) == 0
    unit = json.loads(capsys.readouterr().out)
    assert unit["revenue"] < out["revenue"]  # unit demand: at most one item, less to sell
    for argv, msg in [(["--set", "setting.n_agents=2"], "one-buyer"), (["--points", "1"], "--points")]:
        assert main(["lp", str(cfg), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1
