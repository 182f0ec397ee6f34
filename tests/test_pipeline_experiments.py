"""The experiment list: coverage of the paper's reproduced rows, deduplication, composition."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import yaml

from protoseg.pipeline.experiments import (ExperimentError, build_plan, compose, expand_entries, load_scale,
                                           run_key)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plan():
    return build_plan(scale="mini", seeds=[0])


def test_paper_tables_are_the_checked_transcription(pinned_sha256):
    """configs/paper_tables.yaml is byte for byte the transcription of the paper's tables it was checked
    as (tests/data/SHA256SUMS); an intended correction updates that line in the same commit."""
    path = "configs/paper_tables.yaml"
    assert hashlib.sha256((REPO / path).read_bytes()).hexdigest() == pinned_sha256[path]


def test_every_reproduced_row_and_column_is_covered(plan):
    tables = yaml.safe_load((REPO / "configs/paper_tables.yaml").read_text())
    covered = {e.paper for e in plan.entries.values() if e.paper is not None and e.table != "smoke"}
    expected = set()
    for key, table in tables.items():
        for i, row in enumerate(table["rows"]):
            if not row.get("reproduce"):
                continue
            if isinstance(row.get("miou"), list):
                expected |= {(key, i, j) for j in range(len(row["miou"]))}
            else:
                expected.add((key, i, None))
    assert expected - covered == set()
    assert covered - expected == set()  # nothing points at a cited (non-reproduced) row
    assert len(expected) == 24 + 20 + 16 + 2 + 2 + 12  # tables 1-3, 4, 5a-d, 6, 7, 8


def test_paper_values_resolve(plan):
    e = plan.entries
    assert plan.paper_value(e["t1-ours-b4"]) == 51.7
    assert plan.paper_value(e["t4-ours-k10-847"]) == 19.4
    assert plan.paper_params(e["t4-param-k10-300"]) == 29.66
    assert plan.paper_value(e["t8-lambda2-0.05"]) == 46.1
    assert plan.paper_value(e["t5c-mu0"]) is None  # lost from the text: shown as n/a
    assert plan.paper_value(e["d-official"]) == 80.1


def test_dedupe_shares_identical_experiments(plan):
    default = plan.entry_run["t5a-ce-ppc-ppd"]
    for eid in ("t5b-k10", "t5c-mu0.999", "t5d-cosine", "t8-lambda1-0.01", "t8-lambda2-0.01", "t4-ours-k10-150"):
        assert plan.entry_run[eid] == default, eid
    assert plan.entry_run["t5b-k1"] == plan.entry_run["t4-ours-k1-150"]
    assert plan.entry_run["t5b-k5"] != default
    assert len(set(plan.entry_run.values())) == len(plan.runs)
    # paper scale: MiT-B0 (Table 7) and MiT-B4 (Table 1) are different models
    paper = build_plan(scale="paper", seeds=[0])
    assert paper.entry_run["t7-ours-b0"] != paper.entry_run["t1-ours-b4"]
    assert plan.entry_run["t7-ours-b0"] == plan.entry_run["t1-ours-b4"]  # mini: both MiT-B0
    # at mini, the momentum horizon (mu ** (40000 / iters)) can make mu = 0.9 as memoryless as mu = 0
    # (rounded to 6 digits): Table 5c's two rows then share one run
    iters = plan.runs[plan.entry_run["t5c-mu0.9"]].config["train"]["iters"]
    memoryless = round(0.9 ** (40000 / iters), 6) == 0.0
    assert (plan.entry_run["t5c-mu0"] == plan.entry_run["t5c-mu0.9"]) is memoryless
    assert plan.entry_run["t5c-mu0.9"] != plan.entry_run["t5c-mu0.99"]
    # the paper scale's runs refine the mini scale's: each mini run is one or more whole paper runs
    paper_runs_of = {k: {paper.entry_run[e] for e in run.entries} for k, run in plan.runs.items()}
    assert all(set(paper.runs[p].entries) <= set(plan.runs[k].entries) for k, ps in paper_runs_of.items() for p in ps)
    assert len(paper.runs) == sum(len(ps) for ps in paper_runs_of.values()) > len(plan.runs)


def test_preset_values_do_not_change_the_key():
    scale = load_scale("mini")
    base = dict(id="a", table="t", row="r", column="c", dataset="ade20k", model="mit_b2",
                head="prototype", schedule="ablation_40k")
    (a,) = expand_entries({"tables": {"t": {"entries": [base]}}})
    (b,) = expand_entries({"tables": {"t": {"entries": [{**base, "method": {"momentum": 0.999, "ppd_weight": 0.01}}]}}})
    (c,) = expand_entries({"tables": {"t": {"entries": [{**base, "method": {"momentum": 0.99}}]}}})
    assert run_key(compose(a, scale)) == run_key(compose(b, scale)) != run_key(compose(c, scale))
    # the mini scale maps Eq. 14's momentum to the paper's horizon: 0.99 over 40k steps -> its steps
    iters = compose(c, scale)["train"]["iters"]
    assert compose(c, scale)["model"]["method"] == {"momentum": round(0.99 ** (40000 / iters), 6)}
    assert compose(a, scale)["model"]["method"]["momentum"] == round(0.999 ** (40000 / iters), 6)
    paper = load_scale("paper")  # the paper scale keeps mu as given
    assert compose(c, paper)["model"]["method"]["momentum"] == 0.99


def test_errors_name_the_entry():
    scale = load_scale("mini")
    bad = dict(id="bad1", table="t", row="r", column="c", dataset="ade20k", model="mit_b2",
               head="softmax", schedule="ablation_40k", method={"momentum": 0.5})
    (e,) = expand_entries({"tables": {"t": {"entries": [bad]}}})
    with pytest.raises(ExperimentError, match="bad1"):
        compose(e, scale)
    with pytest.raises(ExperimentError, match="duplicate"):
        expand_entries({"tables": {"t": {"entries": [dict(bad, method={}), dict(bad, method={})]}}})
    with pytest.raises(ExperimentError, match="nope"):
        compose(expand_entries({"tables": {"t": {"entries": [dict(bad, method={}, model="nope")]}}})[0], scale)


def test_run_configs_validate_in_the_engine(plan):
    from protoseg.config import RunConfig

    seen = set()
    for key, run in plan.runs.items():
        tag = (run.config["model"]["backbone"], run.config["model"]["head"], run.dataset)
        if tag in seen:
            continue
        seen.add(tag)
        cfg = plan.run_config(key, 0)
        if cfg["data"].get("top_n"):  # the label set is read from the prepared root
            cfg["model"]["num_classes"] = cfg["data"]["top_n"]
            cfg["data"].pop("root")
            cfg["data"].pop("top_n")
        rc = RunConfig.from_dict(cfg)
        assert rc.run.seed == 0 and rc.tracking.entry == run.entries[0]


def test_planning_does_not_import_torch():
    import subprocess

    code = ("import sys; from protoseg.pipeline.experiments import build_plan; build_plan(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_list_prints_each_runs_key_beside_its_entry_names(plan, capsys):
    """`protoseg experiments list`: one line per run, its key then the names of the entries it serves
    (each a Snakemake target: snakemake -c1 t2-segf-b4); every entry once; --format keys: keys only."""
    from protoseg.pipeline.cli import add_parser
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())

    def run(*argv):
        args = parser.parse_args(["experiments", "list", "--seeds", "0", *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out.splitlines()

    lines = [line.split() for line in run()]
    assert [words[0] for words in lines] == list(plan.runs)
    assert {words[0]: words[1:] for words in lines} == {k: r.entries for k, r in plan.runs.items()}
    names = [name for words in lines for name in words[1:]]
    assert sorted(names) == sorted(plan.entries) and len(names) == len(set(names))
    assert "t2-segf-b4" in names
    assert run("--format", "keys") == list(plan.runs)
    table2 = [line.split() for line in run("--tables", "table2")]
    assert {plan.entry_run[e] for e in plan.entries if plan.entries[e].table == "table2"} == {w[0] for w in table2}


def test_plan_carries_its_scale_file_read_once(plan, tmp_path):
    """The plan holds the scale it was built from, so no consumer reads the scale file again."""
    assert plan.scale_file == "configs/scales/mini.yaml"
    assert plan.scale_config == load_scale("mini")
    scales = tmp_path / "scales"
    scales.mkdir()
    mini = yaml.safe_load((REPO / "configs/scales/mini.yaml").read_text())
    (scales / "mini.yaml").write_text(yaml.safe_dump(mini))
    other = build_plan(scale="mini", seeds=[0], scales_dir=str(scales))
    assert other.scale_file == f"{scales}/mini.yaml"
    (scales / "mini.yaml").write_text("not: the scale\n")  # a later change of the file is not seen
    assert other.scale_config["name"] == "mini" and other.scale_config["train"] == mini["train"]


def test_the_official_tail_row_keeps_the_tables_decoder_head():
    """d-flip-tail flips the release's tail onto the paper method: its model keeps the discrepancy
    table's 3x3 cls_head with dropout (an entry's model_options replace the table's), and the tail's
    align_corners is a model setting; every other setting is d-paper's."""
    entries = {e.id: e for e in expand_entries(yaml.safe_load((REPO / "configs/experiments.yaml").read_text()))}
    scale = load_scale("mini")
    tail, paper = compose(entries["d-flip-tail"], scale), compose(entries["d-paper"], scale)
    assert tail["model"] == {**paper["model"], "align_corners": True,
                             "method": {**paper["model"]["method"], "projection": True, "feature_layernorm": True}}
    assert {k: v for k, v in tail.items() if k != "model"} == {k: v for k, v in paper.items() if k != "model"}
