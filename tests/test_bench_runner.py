"""The fastgen-bench runner end to end on a tiny shape: table, JSON and chart are written and
hold what they claim."""

import json

from fastgen.bench.__main__ import main
from fastgen.bench.registry import cases


def test_runner_writes_table_json_and_chart(tmp_path, capsys):
    assert main(["--ops", "reparam_kl", "--shapes", "16x8", "--repeats", "3", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| reparam_kl | 16x8 | float32 | fwd+bwd |" in table
    data = json.loads((tmp_path / "bench.json").read_text())
    env = data["environment"]
    assert env["fastgen"]["cpu_capability"]
    assert env["device"] == "cpu" and env["timer"] == "perf_counter" and len(env["loadavg_start"]) == 3
    assert env["allocator"]["name"] in ("system", "tcmalloc", "jemalloc")
    rows = data["results"]
    for r in rows:
        assert r["allocator"] == env["allocator"]["name"] and r["device"] == "cpu" and r["l2_flush"] is False
        assert r["memory_bound"] is True and r["loadavg_1m"] >= 0
        assert all(s["page_faults_per_call"] >= 0 for s in r["impls"].values() if "median_s" in s)
    assert {(r["case"], r["pass"]) for r in rows} == {
        (c, p) for c in ("reparam_kl", "reparam_kl[noise]") for p in ("fwd", "fwd+bwd")
    }
    for r in rows:
        assert set(r["impls"]) == {"fastgen", "eager", "compile"}
        for stats in r["impls"].values():
            assert stats["median_s"] > 0 and stats["p25_s"] <= stats["median_s"] <= stats["p75_s"]
            assert len(stats["samples_s"]) == 3 and stats["peak_bytes"] >= 0
        assert r["speedup_vs_eager"] == r["impls"]["eager"]["median_s"] / r["impls"]["fastgen"]["median_s"]
        assert 0 < r["roofline_fraction"] and 0 < r["roofline_fraction_best"]
        assert all(s["min_s"] <= s["p25_s"] for s in r["impls"].values())
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert (tmp_path / "bench.md").read_text().startswith("| case |")


def test_every_case_has_quick_and_full_shapes():
    for case in cases().values():
        assert case.shapes["quick"] and case.shapes["full"], case.name
        assert set(case.shapes["quick"]) <= set(case.shapes["full"]), case.name


def test_list_and_unknown_ops(capsys):
    assert main(["--list"]) == 0
    assert "reparam_kl[noise]" in capsys.readouterr().out
    try:
        main(["--ops", "nonexistent"])
    except SystemExit as exc:
        assert "unknown case or family" in str(exc)
    else:
        raise AssertionError("an unknown op must be an error")


def test_a_wrong_result_is_reported_not_timed():
    # Workload.check flags a contender whose result is wrong (e.g. torch.compile silently dropping
    # a double-backward gradient): the runner records an error for it instead of a timing.
    import torch

    from fastgen.bench.registry import Case, Workload
    from fastgen.bench.runner import run_case

    def make(shape, dtype):
        x = torch.randn(shape, dtype=dtype)
        return Workload(
            inputs=(x,),
            fastgen_fn=lambda t: t * 2,
            eager_fn=lambda t: t + t,
            grad_inputs=(0,),
            grad_outputs=lambda out: (out,),
            upstream_grads=(torch.ones(shape, dtype=dtype),),
            min_bytes={"fwd": 8, "fwd+bwd": 8},
            check=lambda impl, pass_name, result: "flagged" if impl == "eager" else None,
        )

    rows = run_case(
        Case(name="t", family="t", shapes={}, make=make), (4,), torch.float32, repeats=2, impls=("fastgen", "eager")
    )
    for row in rows:
        assert row["impls"]["eager"] == {"error": "RuntimeError: wrong result: flagged"}
        assert row["impls"]["fastgen"]["median_s"] > 0 and "speedup_vs_eager" not in row


def test_exclude_skips_cases_by_name(tmp_path, capsys):
    assert (
        main(
            [
                "--ops",
                "reparam_kl",
                "--exclude",
                "[noise]",
                "--shapes",
                "8x8",
                "--repeats",
                "2",
                "--no-compile",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {r["case"] for r in rows} == {"reparam_kl"}


def test_compare_table_puts_runs_side_by_side():
    from fastgen.bench.compare import table

    def run(label, fg, roof):
        row = {
            "case": "op",
            "shape": [4, 4],
            "pass": "fwd+bwd",
            "memory_bound": True,
            "roofline_fraction": roof,
            "speedup_vs_eager": 2.0,
            "impls": {"fastgen": {"median_s": fg}, "eager": {"median_s": 2 * fg}, "compile": {"error": "x"}},
        }
        model = {
            "case": "model",
            "shape": [1],
            "pass": "fwd+bwd",
            "memory_bound": False,
            "roofline_fraction": 0.01,
            "impls": {"fastgen": {"median_s": 1.0}},
        }
        return label, {}, [row, model]

    text = table([run("tcmalloc", 1e-3, 0.71), run("system", 4e-3, 0.2)])
    assert (
        "| op | 4x4 | fwd+bwd | 1.000 / 4.000 | 2.000 / 8.000 | failed / failed | 2.00x / 2.00x | 71% / 20% "
        "| - / - ; - / - |"
    ) in text
    assert "| model | 1 | fwd+bwd |" in text and "1% / 1%" not in text  # no roofline for a model step
    assert "| model |" not in table([run("a", 1e-3, 0.5)], memory_bound_only=True)


def test_ops_names_may_hold_commas_in_brackets():
    from fastgen.bench.__main__ import _selected

    chosen = _selected(cases(), "coupling[channel,inverse],batch_hard_triplet")
    assert [c.name for c in chosen] == ["coupling[channel,inverse]", "batch_hard_triplet"]
