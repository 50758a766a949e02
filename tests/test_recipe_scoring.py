"""Recipe helpers: text normalisation, sclite scoring + jiwer cross-check, bootstrap intervals, RESULTS report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest

from espnet_peft.bin import make_report, score
from espnet_peft.recipe import bootstrap, comparisons, report, scoring
from espnet_peft.recipe.provenance import mark_made_from
from espnet_peft.utils.text_norm import normalize_text
from helpers.fault_ledger import refuse


def _has_sclite() -> bool:
    try:
        scoring.find_sclite()
    except RuntimeError:
        return False
    return True


needs_sclite = pytest.mark.skipif(not _has_sclite(), reason="sclite not installed: apt-get install sctk")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_text(path: Path, lines: Dict[str, str]) -> Path:
    path.write_text("".join(f"{utt} {words}\n" for utt, words in lines.items()), encoding="utf-8")
    return path


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("raw, expected", [
    ("<eng><asr><notimestamps> Hello, World!", "hello world"),
    ("Don't  STOP — it's 'rock'n'roll'.", "don't stop it's rock'n'roll"),
    ("<noise> um [laughter] yes <na>", "um yes"),
    ("well-known\tU.S.A", "well known u s a"),
    ("students' \u2018quote\u2019 can\u2019t", "students quote can't"),
    ("<0.00> hi<1.20>there<sos/eos>", "hi there"),
    ("\uff26\uff55\uff4c\uff4c \uff37\uff29\uff24\uff34\uff28 ÉCOLE", "full width école"),
    ("<unk>", ""),
])
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_char_tokens_mark_word_boundaries_like_espnet() -> None:
    assert scoring.char_tokens("ab c") == ["a", "b", scoring.WORD_BOUNDARY, "c"]


# ---------------------------------------------------------------- sclite scoring


@pytest.fixture
def scored(tmp_path: Path) -> Dict[str, scoring.ScoreResult]:
    """Hand-counted: u1 1 sub + 1 del, u2 1 ins (after normalisation), u3 correct, u4 has no hypothesis."""
    ref = write_text(tmp_path / "ref", {"s1-u1": "the cat sat on the mat", "s1-u2": "Hello world.",
                                        "s2-u3": "a b c", "s2-u4": "x y"})
    hyp = write_text(tmp_path / "hyp", {"s1-u1": "the cat sit on mat", "s1-u2": "<eng><asr> hello, BIG world!",
                                        "s2-u3": "a b c", "s9-extra": "ignored"})
    return scoring.score_files(ref, hyp, tmp_path / "decode" / "test")


@needs_sclite
def test_sclite_matches_hand_counts(scored: Dict[str, scoring.ScoreResult], tmp_path: Path) -> None:
    words = scored["word"]
    assert words.counts.utt_ids == ("s1-u1", "s1-u2", "s2-u3", "s2-u4")
    np.testing.assert_array_equal(words.counts.ref, [6, 2, 3, 2])
    np.testing.assert_array_equal(words.counts.sub, [1, 0, 0, 0])
    np.testing.assert_array_equal(words.counts.dele, [1, 0, 0, 2])  # u4: missing hypothesis = all deletions
    np.testing.assert_array_equal(words.counts.ins, [0, 1, 0, 0])
    assert words.counts.error_rate == pytest.approx(100 * 5 / 13)
    score_dir = tmp_path / "decode" / "test" / "score_wer"
    assert sorted(p.name for p in score_dir.iterdir()) == [
        "hyp.trn", "jiwer_crosscheck.json", "made_from.json", "per_utt.tsv", "ref.trn", "result.txt", "summary.json"]
    result_txt = (score_dir / "result.txt").read_text()
    assert "Sum/Avg" in result_txt  # sclite's own report, as ESPnet keeps it
    total = scoring.parse_sclite_sum(result_txt)
    assert (total["ref"], total["sub"], total["del"], total["ins"], total["err"]) == (13, 1, 3, 1, 5)
    assert (score_dir / "hyp.trn").read_text().splitlines()[3] == "(s2-s2-u4)"
    assert words.crosscheck["equal"] and words.crosscheck["differing_utterances"] == []
    reread = scoring.read_score_dir(score_dir.parent)
    assert reread.utt_ids == words.counts.utt_ids and np.array_equal(reread.errors, words.counts.errors)


@needs_sclite
def test_cer_on_characters_with_space_tokens(scored: Dict[str, scoring.ScoreResult]) -> None:
    chars = scored["char"]
    u2 = chars.counts.utt_ids.index("s1-u2")  # "hello world" -> "hello big world": "b i g <space>" inserted
    assert (chars.counts.ref[u2], chars.counts.sub[u2], chars.counts.dele[u2], chars.counts.ins[u2]) == (11, 0, 0, 4)
    assert "<space>" in (chars.score_dir / "ref.trn").read_text()


@needs_sclite
def test_missing_and_extra_hypotheses_are_listed(scored: Dict[str, scoring.ScoreResult]) -> None:
    summary = json.loads((scored["word"].score_dir / "summary.json").read_text())
    assert summary["missing_hyp"] == ["s2-u4"] and summary["extra_hyp"] == ["s9-extra"]
    assert summary["err"] == 5 and summary["ref"] == 13


@needs_sclite
def test_weighted_alignment_differences_are_recorded(tmp_path: Path) -> None:
    """sclite (sub 4, del/ins 3) vs jiwer (unit costs): a tie split differently, and one more error from sclite."""
    ref = write_text(tmp_path / "ref", {"s-tie": "a b", "s-shift": "a b c d e"})
    hyp = write_text(tmp_path / "hyp", {"s-tie": "b c", "s-shift": "d e x y z"})
    check = scoring.score_files(ref, hyp, tmp_path / "out", units=["word"])["word"].crosscheck
    differ = {u["utt_id"]: u for u in check["differing_utterances"]}
    assert differ["s-tie"]["sclite"] == {"sub": 0, "del": 1, "ins": 1, "err": 2}
    assert differ["s-tie"]["jiwer"]["err"] == 2
    assert differ["s-shift"]["sclite"] == {"sub": 0, "del": 3, "ins": 3, "err": 6}
    assert differ["s-shift"]["jiwer"] == {"sub": 5, "del": 0, "ins": 0, "err": 5}
    assert check["ref_tokens"] == {"sclite": 7, "jiwer": 7}
    assert not check["equal"] and check["unexplained"] == []
    assert json.loads((tmp_path / "out" / "score_wer" / "jiwer_crosscheck.json").read_text()) == check


def test_empty_reference_is_an_error_naming_the_utterance(tmp_path: Path) -> None:
    ref = write_text(tmp_path / "ref", {"s-u1": "fine", "s-u2": "<noise> [laughter]"})
    hyp = write_text(tmp_path / "hyp", {"s-u1": "fine", "s-u2": ""})
    with pytest.raises(scoring.ScoringError, match="s-u2"):
        scoring.score_files(ref, hyp, tmp_path / "out")


def test_missing_sclite_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCLITE", raising=False)
    monkeypatch.setattr(scoring.shutil, "which", lambda name: None)
    monkeypatch.setattr(scoring, "SCLITE_FALLBACKS", ())
    with pytest.raises(RuntimeError, match=r"sclite not found: apt-get install sctk"):
        scoring.find_sclite()


def test_ids_sclite_cannot_round_trip_are_rejected() -> None:
    with pytest.raises(scoring.ScoringError, match="differ only in case"):
        scoring.trn_ids(["s-A", "s-a"], {"s-A": "s", "s-a": "s"})
    with pytest.raises(scoring.ScoringError, match="parentheses"):
        scoring.trn_ids(["s-(1)"], {"s-(1)": "s"})


@needs_sclite
def test_score_cli_prints_wer_and_cer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = write_text(tmp_path / "ref", {"s-u1": "one two three four"})
    hyp = write_text(tmp_path / "hyp", {"s-u1": "one too three four"})
    utt2spk = write_text(tmp_path / "utt2spk", {"s-u1": "spk-1"})
    score.main(["--ref", str(ref), "--hyp", str(hyp), "--out", str(tmp_path / "out"), "--utt2spk", str(utt2spk)])
    out = capsys.readouterr().out
    assert "WER 25.00%" in out and "CER " in out
    assert "(spk_1-s-u1)" in (tmp_path / "out" / "score_wer" / "ref.trn").read_text()


# ---------------------------------------------------------------- bootstrap


def synthetic_errors(n_utts: int, wer: float, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    ref = rng.integers(3, 30, size=n_utts)
    return rng.binomial(ref, wer), ref


def test_wer_interval_contains_point_and_is_deterministic() -> None:
    errors, ref = synthetic_errors(300, 0.2, seed=1)
    ci = bootstrap.wer_ci(errors, ref)
    assert ci.low < ci.point < ci.high
    assert ci.point == pytest.approx(100 * errors.sum() / ref.sum())
    assert bootstrap.wer_ci(errors, ref) == ci
    assert bootstrap.wer_ci(errors, ref, seed=1) != ci


def test_wer_interval_shrinks_with_more_utterances() -> None:
    small, large = (bootstrap.wer_ci(*synthetic_errors(n, 0.2, seed=2)) for n in (50, 2000))
    assert large.high - large.low < 0.5 * (small.high - small.low)


def test_paired_intervals() -> None:
    errors, ref = synthetic_errors(200, 0.3, seed=3)
    assert bootstrap.paired_difference_ci(errors, errors, ref) == bootstrap.Interval(0.0, 0.0, 0.0)
    worse = errors + 1
    diff = bootstrap.paired_difference_ci(worse, errors, ref)
    assert 0 < diff.low <= diff.point <= diff.high
    halved = bootstrap.relative_reduction_ci(errors / 2, errors, ref)
    assert halved.point == pytest.approx(50.0) and halved.low == pytest.approx(50.0)
    with pytest.raises(ValueError, match="same utterances"):
        bootstrap.paired_difference_ci(errors[:-1], errors, ref)


# ---------------------------------------------------------------- report


def scored_by_hand(score_dir: Path) -> None:
    """The provenance record a score dir needs (``scoring.check_score_dir``), for counts made here, not by sclite."""
    mark_made_from(score_dir, {"inputs": {}, "settings": {}}, outputs=["per_utt.tsv"])


def write_run(exp: Path, domain: str, name: str, target_errors: np.ndarray, source_errors: np.ndarray,
              ref: Dict[str, np.ndarray], params: int = 1000, **fields: object) -> None:
    """One experiment as the shell recipe leaves it: score dirs + run_info.json (method = ``name`` unless ``fields``
    give it; ``fields`` also: seed, settings, label)."""
    run_dir = exp / domain / name
    for role, errors in (("target", target_errors), ("source", source_errors)):
        score_dir = run_dir / "decode" / f"test_{role}" / "score_wer"
        score_dir.mkdir(parents=True)
        n = len(errors)
        zeros = np.zeros(n, dtype=np.int64)
        counts = scoring.UtteranceCounts(tuple(f"{role}-u{i}" for i in range(n)), ref[role], errors, zeros, zeros)
        counts.write_tsv(score_dir / "per_utt.tsv")
        scored_by_hand(score_dir)
    info = {"domain": domain, "method": name, "trainable_params": params,
            "train_time_s": None if name == "zero_shot" else 4000.0, "peak_mem_mb": 2048.0,
            "scores": {"target": "decode/test_target", "source": "decode/test_source"}, **fields}
    (run_dir / "run_info.json").write_text(json.dumps(info))


@pytest.fixture
def exp_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    exp = tmp_path / "exp"
    ref = {"target": rng.integers(5, 20, size=60), "source": rng.integers(5, 20, size=40)}
    zero = {}
    for domain, shift in (("child", 0.5), ("accent", 0.3)):
        zero[domain] = rng.binomial(ref["target"], shift), rng.binomial(ref["source"], 0.1)
        write_run(exp, domain, "zero_shot", *zero[domain], ref, params=0)
        for method, learn, forget in (("full", 0.5, 0.3), ("lora", 0.4, 0.1)):
            write_run(exp, domain, method, (zero[domain][0] * (1 - learn)).astype(int),
                      zero[domain][1] + rng.binomial(1, forget, size=40), ref)
    for share in (0.25, 0.5, 0.75):  # an SSVD-O outer_share sweep on one domain, as the recipe names it (0.5: default)
        label = "ssvd_o" if share == 0.5 else f"ssvd_o outer_share={share}"
        write_run(exp, "child", f"ssvd_o_s0_{share}", (zero["child"][0] * (1 - share / 2)).astype(int),
                  zero["child"][1] + rng.binomial(1, share / 3, size=40), ref, method="ssvd_o", seed=0,
                  settings={"outer_share": share}, label=label)
    return exp


def test_report_writes_tables_json_and_plots(exp_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    make_report.main(["--exp_root", str(exp_root), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert set(results["domains"]) == {"accent", "child"}
    child_rows = results["domains"]["child"]["rows"]
    assert [r["label"] for r in child_rows] == ["zero_shot", "full", "lora", "ssvd_o", "ssvd_o outer_share=0.25",
                                                "ssvd_o outer_share=0.75"]
    assert child_rows[0]["forgetting"] is None and child_rows[1]["learning"]["point"] == pytest.approx(50, abs=5)
    for row in child_rows[1:]:
        for key in ("target_wer", "source_wer", "forgetting", "learning"):
            assert row[key]["low"] <= row[key]["point"] <= row[key]["high"]
    markdown = (out / "RESULTS.md").read_text()
    assert "## Environments" in markdown and "espnet version" in markdown
    for domain, block in results["domains"].items():
        section = markdown.split(f"## {domain}\n")[1].split("\n## ")[0]
        table_rows = [line for line in section.splitlines() if line.startswith("|")][2:]
        assert [row.split("|")[1] for row in table_rows] == [r["label"] for r in block["rows"]]
    for name in ("learning_vs_forgetting.png", "sweep_ssvd_o_outer_share.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_sweep_points_are_the_rows_that_set_the_field(exp_root: Path) -> None:
    results = report.summarise(report.collect_results(exp_root), n_resamples=50)
    sweeps = report.sweeps(results)
    assert list(sweeps) == [("ssvd_o", "outer_share")] and list(sweeps["ssvd_o", "outer_share"]) == ["child"]
    points = sweeps["ssvd_o", "outer_share"]["child"]
    assert [(value, row["label"]) for value, row in points] == [
        (0.25, "ssvd_o outer_share=0.25"), (0.5, "ssvd_o"), (0.75, "ssvd_o outer_share=0.75")]


def seeded_exp(root: Path) -> Dict[str, object]:
    """child: zero_shot, then full, lora, dora (learns clearly more than lora) and pissa (lora's twin), 3 seeds each."""
    rng = np.random.default_rng(5)
    ref = {"target": rng.integers(5, 20, size=200), "source": rng.integers(5, 20, size=150)}
    zero = {"target": rng.binomial(ref["target"], 0.6), "source": rng.binomial(ref["source"], 0.1)}
    write_run(root, "child", "zero_shot", zero["target"], zero["source"], ref, params=0)
    rates = {"full": (0.2, 0.3), "lora": (0.4, 0.12), "dora": (0.2, 0.12), "pissa": (0.4, 0.12)}
    errors: Dict[str, list] = {}
    for method, (target_rate, source_rate) in rates.items():
        errors[method] = []
        for seed in (0, 1, 2):
            run = {"target": rng.binomial(ref["target"], target_rate),
                   "source": rng.binomial(ref["source"], source_rate)}
            if method == "pissa":  # lora's errors shuffled over the utterances: the same WER, no real difference
                run = {role: rng.permutation(e) for role, e in errors["lora"][seed].items()}
            errors[method].append(run)
            write_run(root, "child", f"{method}_s{seed}", run["target"], run["source"], ref, method=method, seed=seed,
                      train_time_s=100.0 * (seed + 1))
    return {"ref": ref, "zero": zero, "errors": errors}


def test_rows_pool_seeds_with_mean_sd_and_intervals_over_utterances(tmp_path: Path) -> None:
    data = seeded_exp(tmp_path / "exp")
    block = report.summarise(report.collect_results(tmp_path / "exp"), n_resamples=300)["domains"]["child"]
    assert [(r["label"], r["seeds"]) for r in block["rows"]] == [
        ("zero_shot", [None]), ("full", [0, 1, 2]), ("dora", [0, 1, 2]), ("lora", [0, 1, 2]), ("pissa", [0, 1, 2])]
    ref, zero, runs = data["ref"], data["zero"], data["errors"]["lora"]
    lora = next(r for r in block["rows"] if r["label"] == "lora")
    # by hand, seed by seed
    target = [100 * r["target"].sum() / ref["target"].sum() for r in runs]
    source = [100 * r["source"].sum() / ref["source"].sum() for r in runs]
    forgetting = [wer - 100 * zero["source"].sum() / ref["source"].sum() for wer in source]
    learning = [100 * (zero["target"].sum() - r["target"].sum()) / zero["target"].sum() for r in runs]
    for key, values in (("target_wer", target), ("source_wer", source), ("forgetting", forgetting),
                        ("learning", learning)):
        assert lora[key]["point"] == pytest.approx(np.mean(values), abs=1e-3), key
        assert lora["sd"][key] == pytest.approx(np.std(values, ddof=1), abs=1e-3), key
        assert lora["per_seed"][key] == pytest.approx(values, abs=1e-3), key
    assert lora["train_time_s"] == pytest.approx(200.0)
    assert block["rows"][0]["sd"]["target_wer"] is None  # one run: no spread
    # pooled: every seed's errors summed on the same resampled utterances, over every seed's reference words
    summed = sum(r["target"] for r in runs)
    pooled = bootstrap.wer_ci(summed, 3 * ref["target"], n_resamples=300)
    assert (lora["target_wer"]["low"], lora["target_wer"]["high"]) == pytest.approx((pooled.low, pooled.high),
                                                                                    abs=1e-3)
    markdown = report.render_markdown(report.summarise(report.collect_results(tmp_path / "exp"), n_resamples=300))
    lora_line = next(line for line in markdown.splitlines() if line.startswith("|lora|"))
    assert f"|3|" in lora_line and f"{np.mean(target):.1f} ± {np.std(target, ddof=1):.1f} [" in lora_line


INTERVAL = re.compile(r"([-+]\d+\.\d+) \[([-+]\d+\.\d+), ([-+]\d+\.\d+)\] points")


def test_every_significance_statement_follows_from_its_interval(tmp_path: Path) -> None:
    seeded_exp(tmp_path / "exp")
    out = tmp_path / "report"
    report.build_report(report.collect_results(tmp_path / "exp"), out, n_resamples=300)
    comparisons = json.loads((out / "results.json").read_text())["domains"]["child"]["comparisons"]
    pairs = [(c["method"], c["reference"], c["aspect"]) for c in comparisons]
    assert sorted(pairs) == sorted((m, r, a) for m, r in (("lora", "full"), ("dora", "full"), ("pissa", "full"),
                                                          ("dora", "lora"), ("pissa", "lora"))
                                   for a in ("learning", "forgetting"))
    for c in comparisons:
        d = c["difference"]
        assert c["significant"] == (d["low"] > 0 or d["high"] < 0), c
    # the constructed cases: dora learns clearly more than lora; pissa is lora's twin; lora forgets less than full
    by_pair = {(c["method"], c["reference"], c["aspect"]): c for c in comparisons}
    assert by_pair["dora", "lora", "learning"]["significant"]
    assert by_pair["dora", "lora", "learning"]["statement"].startswith(
        "dora learns more than lora on child: target WER -")
    assert not by_pair["pissa", "lora", "learning"]["significant"]
    assert by_pair["pissa", "lora", "learning"]["statement"].startswith(
        "pissa and lora are not distinguishable in learning on child")
    assert by_pair["lora", "full", "forgetting"]["statement"].startswith("lora forgets less than full on child")
    # and in RESULTS.md: "significant" exactly where the printed interval excludes 0
    statements = [line for line in (out / "RESULTS.md").read_text().splitlines()
                  if line.startswith("- ") and " points" in line]
    assert len(statements) == len(comparisons)
    for line in statements:
        point, low, high = map(float, INTERVAL.search(line).groups())
        assert low <= high
        assert ("significant" in line) == (low > 0 or high < 0) == ("not distinguishable" not in line), line


def test_analysis_section_finds_the_analysed_seed_of_a_row(tmp_path: Path) -> None:
    """Stage 13 analyses one seed per row; the row finds it among its run_infos (here the second seed's)."""
    seeded_exp(tmp_path / "exp")
    analysed = tmp_path / "analysis" / "child" / "lora_s1"
    analysed.mkdir(parents=True)
    model_b = {"path": str(tmp_path / "exp" / "child" / "lora_s1")}
    (analysed / "analysis.json").write_text(json.dumps({"models": {"B": model_b}, "cka": {"drift": [0.95, 0.9]}}))
    from espnet_peft.analysis.summary import report_section

    written = report.build_report(report.collect_results(tmp_path / "exp"), tmp_path / "report", n_resamples=50,
                                  analysis_root=tmp_path / "analysis", analysis_section=report_section)
    section = written["results_md"].read_text().split("## Analysis")[1]
    assert [line.split("|")[1] for line in section.splitlines() if line.startswith("|")][2:] == ["lora"]


def test_seeded_and_unseeded_runs_of_one_label_are_refused(tmp_path: Path) -> None:
    seeded_exp(tmp_path / "exp")
    ref = {"target": np.full(200, 10), "source": np.full(150, 10)}
    write_run(tmp_path / "exp", "child", "lora", ref["target"] - 5, ref["source"] - 9, ref)  # an old run, no seed
    with pytest.raises(report.ReportError, match="several runs share a label and seed .'lora', seeds"):
        report.summarise(report.collect_results(tmp_path / "exp"), n_resamples=50)


def test_report_warns_when_the_source_model_fails_its_own_domain(exp_root: Path, tmp_path: Path) -> None:
    assert "Warning" not in (report.build_report(report.collect_results(exp_root), tmp_path / "ok",
                                                 n_resamples=50)["results_md"]).read_text()
    ref = {"target": np.full(30, 10), "source": np.full(20, 10)}
    untrained = tmp_path / "untrained"
    write_run(untrained, "child", "zero_shot", ref["target"], np.full(20, 9), ref, params=0)  # 90% source WER
    write_run(untrained, "child", "lora", ref["target"] - 1, np.full(20, 9), ref)
    markdown = report.build_report(report.collect_results(untrained), tmp_path / "bad",
                                   n_resamples=50)["results_md"].read_text()
    assert "zero-shot WER on its own source set is 90.0%" in markdown


def test_no_sweep_plot_without_several_values(exp_root: Path, tmp_path: Path) -> None:
    records = [r for r in report.collect_results(exp_root) if r.label in ("zero_shot", "full", "lora", "ssvd_o")]
    written = report.build_report(records, tmp_path / "report", n_resamples=200)
    assert not [k for k in written if k.startswith("sweep_")] and not list((tmp_path / "report").glob("sweep_*"))
    assert written["learning_vs_forgetting"].read_bytes().startswith(PNG_MAGIC)


def test_report_needs_one_zero_shot_per_domain(exp_root: Path) -> None:
    records = [r for r in report.collect_results(exp_root) if not (r.domain == "accent" and r.method == "zero_shot")]
    with pytest.raises(report.ReportError, match="'accent' has 0 zero_shot"):
        report.summarise(records)


def test_report_rejects_runs_scored_on_other_utterances(exp_root: Path) -> None:
    records = report.collect_results(exp_root)
    lora = next(r for r in records if r.method == "lora")
    counts = lora.scores["target"]
    lora.scores["target"] = scoring.UtteranceCounts(counts.utt_ids[:-1], counts.ref[:-1], counts.sub[:-1],
                                                    counts.dele[:-1], counts.ins[:-1])
    with pytest.raises(scoring.ScoringError, match="utterance sets differ"):
        report.summarise(records)


@needs_sclite
def test_report_reads_real_score_dirs(tmp_path: Path) -> None:
    """End to end: the scoring CLI's output is what run_info.json points at."""
    exp = tmp_path / "exp"
    refs = {"target": {"k-1": "big red dog", "k-2": "a small cat"}, "source": {"a-1": "hello there"}}
    hyps = {"zero_shot": {"k-1": "big bed dog", "k-2": "small cat", "a-1": "hello there"},
            "lora": {"k-1": "big red dog", "k-2": "a small cat", "a-1": "hello hair"}}
    for method, hyp in hyps.items():
        for role, ref in refs.items():
            out = exp / "child" / method / "decode" / role
            out.mkdir(parents=True)
            scoring.score_files(write_text(out / "ref", ref), write_text(out / "hyp", hyp), out, units=["word"])
        (exp / "child" / method / "run_info.json").write_text(json.dumps(
            {"domain": "child", "method": method, "trainable_params": 0 if method == "zero_shot" else 10,
             "scores": {"target": "decode/target", "source": "decode/source"}}))
    rows = report.summarise(report.collect_results(exp), n_resamples=100)["domains"]["child"]["rows"]
    assert rows[0]["target_wer"]["point"] == pytest.approx(100 * 2 / 6, abs=1e-3)  # results are rounded
    assert rows[1]["learning"]["point"] == pytest.approx(100.0)
    assert rows[1]["forgetting"]["point"] == pytest.approx(50.0)


def test_ssvd_o_is_compared_with_ssvd_once_besides_full_and_lora() -> None:
    rng = np.random.default_rng(0)
    ref = {"target": rng.integers(5, 20, size=50), "source": rng.integers(5, 20, size=40)}
    errors = {m: {role: rng.binomial(words, 0.3) for role, words in ref.items()}
              for m in ("full", "lora", "ssvd", "ssvd_o")}
    pairs = [(c.method, c.reference) for c in comparisons.compare("child", errors, ref, n_resamples=50)
             if c.aspect == "learning"]
    assert pairs == [("lora", "full"), ("ssvd", "full"), ("ssvd_o", "full"), ("ssvd", "lora"), ("ssvd_o", "lora"),
                     ("ssvd_o", "ssvd")]
    without_ssvd = {m: e for m, e in errors.items() if m != "ssvd"}
    assert ("ssvd_o", "ssvd") not in [(c.method, c.reference)
                                      for c in comparisons.compare("child", without_ssvd, ref, n_resamples=50)]


def test_other_source_sets_get_wer_and_paired_forgetting_over_seeds(tmp_path: Path) -> None:
    """A second source-domain set (the Whisper recipe's espeak adult speech beside Piper): its WER per row, pooled
    over seeds, and forgetting against the zero-shot model on the same utterances, by hand."""
    rng = np.random.default_rng(1)
    exp = tmp_path / "exp"
    ref = {"target": rng.integers(5, 20, size=30), "source": rng.integers(5, 20, size=30)}
    other_ref = rng.integers(5, 20, size=25)
    other = {"zero_shot": rng.binomial(other_ref, 0.3)}
    for seed in (0, 1, 2):
        other[f"lora_s{seed}"] = rng.binomial(other_ref, 0.4)
    for name, errors in other.items():
        fields = {} if name == "zero_shot" else {"method": "lora", "seed": int(name[-1])}
        write_run(exp, "child", name, rng.binomial(ref["target"], 0.3), rng.binomial(ref["source"], 0.1), ref,
                  params=0 if name == "zero_shot" else 1000, **fields)
        score_dir = exp / "child" / name / "decode" / "espeak" / "score_wer"
        score_dir.mkdir(parents=True)
        zeros = np.zeros(len(errors), dtype=np.int64)
        scoring.UtteranceCounts(tuple(f"o-u{i}" for i in range(len(errors))), other_ref, errors, zeros,
                                zeros).write_tsv(score_dir / "per_utt.tsv")
        scored_by_hand(score_dir)
        info = json.loads((exp / "child" / name / "run_info.json").read_text())
        info["other_sources"] = {"espeak": "decode/espeak"}
        (exp / "child" / name / "run_info.json").write_text(json.dumps(info))
    results = report.summarise(report.collect_results(exp), n_resamples=200)
    rows = {r["label"]: r for r in results["domains"]["child"]["rows"]}
    per_seed = [100 * other[f"lora_s{s}"].sum() / other_ref.sum() for s in (0, 1, 2)]
    zero_wer = 100 * other["zero_shot"].sum() / other_ref.sum()
    lora = rows["lora"]["other_sources"]["espeak"]
    assert lora["wer"]["point"] == pytest.approx(np.mean(per_seed), abs=1e-3)
    assert lora["sd"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-3)
    assert lora["forgetting"]["point"] == pytest.approx(np.mean(per_seed) - zero_wer, abs=1e-3)
    assert lora["forgetting"]["low"] <= lora["forgetting"]["point"] <= lora["forgetting"]["high"]
    assert rows["zero_shot"]["other_sources"]["espeak"]["forgetting"] is None
    markdown = report.render_markdown(results)
    assert "Other source-domain sets: `espeak` (25 utterances" in markdown
    line = next(line for line in markdown.splitlines() if line.startswith("|lora|") and line.count("|") == 4)
    assert f"{np.mean(per_seed):.1f} ± " in line


def test_zero_shot_table_shows_loops_and_the_token_cap(tmp_path: Path) -> None:
    from espnet_peft.recipe.zero_shot_table import zero_shot_lines

    decoded = tmp_path / "decode_zeroshot" / "piper_test"
    decoded.mkdir(parents=True)
    (tmp_path / "ref").write_text("u1 the cat sat\nu2 a dog ran\n")
    (decoded / "text").write_text("u1 The cat sat.\nu2 A dog ran a dog ran a dog ran\n")
    scoring.score_files(tmp_path / "ref", decoded / "text", decoded, normalizer="whisper_english")
    (decoded / "decode_info.json").write_text(json.dumps({"length_cap": 9, "hit_length_cap": 1}))
    lines = zero_shot_lines(tmp_path / "decode_zeroshot")
    # 6 insertions over 6 reference words: WER 100%, insertions 100%, the longest hypothesis 3x its reference
    assert lines[-1] == "|piper_test|2|6|100.0|100.0|3.0|1|1 (cap 9 tokens)|"
    assert json.loads((decoded / "score_wer" / "summary.json").read_text())["normalizer"] == "whisper_english"


def _decoded_with(exp: Path, settings: Dict[str, object], **odd: Dict[str, object]) -> None:
    """A decode record (made_from.json) in every decode set dir of ``exp``; runs named in ``odd`` get those settings."""
    for decode_set in sorted(exp.glob("*/*/decode/*")):
        run = decode_set.parent.parent.name
        mark_made_from(decode_set, {"inputs": {}, "settings": {"model_sha256": run, **odd.get(run, settings)}})


@pytest.mark.fault_case
def test_a_table_holds_one_decode_setting_and_names_it(exp_root: Path, tmp_path: Path) -> None:
    _decoded_with(exp_root, {"ctc_weight": 0.0, "word_penalty": 0.0})
    markdown = report.build_report(report.collect_results(exp_root), tmp_path / "same", n_resamples=50)["results_md"]
    assert ("- decoding and scoring, the same for every row: ctc_weight=`0.0`, decoder=`espnet2 Speech2Text`, "
            "normalizer=`default`, word_penalty=`0.0`") in markdown.read_text()
    _decoded_with(exp_root, {"ctc_weight": 0.0, "word_penalty": 0.0}, lora={"ctc_weight": 0.0, "word_penalty": 1.0})
    refuse("one method re-decoded with another word penalty, then the report",
           lambda: report.summarise(report.collect_results(exp_root), n_resamples=50),
           "lora seed None (")
    with pytest.raises(report.ReportError, match=r"lora seed None .*word_penalty.*\(0\.0, 1\.0\)"):
        report.summarise(report.collect_results(exp_root), n_resamples=50)


@pytest.mark.fault_case
@needs_sclite
def test_scores_of_edited_hypotheses_or_edited_scores_are_refused_by_name(tmp_path: Path) -> None:
    decoded = tmp_path / "decode" / "test"
    ref = write_text(tmp_path / "ref", {"u1": "big red dog", "u2": "a small cat"})
    decoded.mkdir(parents=True)
    hyp = write_text(decoded / "text", {"u1": "big bed dog", "u2": "a small cat"})
    mark_made_from(decoded, {"inputs": {}, "settings": {}}, outputs=["text"])  # as a decoder leaves it
    scoring.score_files(ref, hyp, decoded, units=["word"])
    assert scoring.read_score_dir(decoded).sub.sum() == 1
    per_utt = decoded / "score_wer" / "per_utt.tsv"
    kept = per_utt.read_text()
    per_utt.write_text(kept.replace("\t1\t", "\t0\t", 1))
    refuse("per_utt.tsv edited, then the report (stage 12 alone)", lambda: scoring.read_score_dir(decoded),
           f"{per_utt}'] changed after it was scored")
    per_utt.write_text(kept)
    write_text(decoded / "text", {"u1": "big red dog", "u2": "a small cat"})  # a hand edit after decoding
    refuse("hypotheses edited after scoring, then the report (stage 12 alone)",
           lambda: scoring.read_score_dir(decoded), f"{hyp} changed after it was scored")
    scoring.score_files(ref, hyp, decoded, units=["word"])  # re-scored: the edit is still not a decoder's output
    refuse("hypotheses edited and re-scored, then the report (stages 9-12)", lambda: scoring.read_score_dir(decoded),
           f"{hyp} changed after it was decoded")
