"""WER and CER with NIST ``sclite``, laid out like ESPnet's ``asr.sh`` scoring stage, cross-checked with jiwer.

``score_files(ref, hyp, out_dir)`` normalises both Kaldi ``text`` files (``text_norm.normalize_text``), then for each
unit writes::

    out_dir/score_wer/ ref.trn hyp.trn   sclite input, "tokens (spk-uttid)" per line
                       result.txt        sclite's own report (-o all stdout: sum, rsum and per-utterance pra)
                       per_utt.tsv       per-utterance counts parsed from result.txt (input of the bootstrap)
                       summary.json      totals, error rate, missing / extra hypotheses
                       jiwer_crosscheck.json
    out_dir/score_cer/ ...               same, on characters with "<space>" at word boundaries (as ESPnet does)

sclite aligns with weighted costs (substitution 4, deletion 3, insertion 3), jiwer with unit costs. Both count the
same reference tokens (checked, an error otherwise), but the alignments may differ: sclite minimises
``4S + 3(D + I)``, jiwer ``S + D + I``. On a tie sclite prefers a deletion + insertion pair to two substitutions (same
total, different split), and it trades 5 substitutions for 3 deletions + 3 insertions (one more error; e.g.
"a b c d e" vs "d e x y z": jiwer 5 S, sclite 3 D + 3 I). So per utterance sclite's error count is >= jiwer's; the
cross-check lists every utterance where the two differ and flags any where sclite counts fewer errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe.provenance import (ProvenanceError, changed_outputs, file_sha256, made_from, mark_made_from,
                                            read_record)
from espnet_peft.utils.kaldi_data import read_table
from espnet_peft.utils.text_norm import NORMALIZERS

WORD_BOUNDARY = "<space>"  # ESPnet's CER token between words
UNITS = ("word", "char")
RATE_NAMES = {"word": "WER", "char": "CER"}
SCORE_DIRS = {unit: f"score_{name.lower()}" for unit, name in RATE_NAMES.items()}
SCLITE_COSTS = {"sub": 4, "del": 3, "ins": 3}  # sclite's default DP weights (correct = 0)
# Debian's sctk puts the binaries under /usr/lib/sctk/bin and only a `sctk <tool>` dispatcher on PATH.
SCLITE_FALLBACKS = ("/usr/lib/sctk/bin/sclite",)


class ScoringError(ValueError):
    """Bad scoring input (a data problem the user fixes), as opposed to a failing tool."""


# ---------------------------------------------------------------- inputs


def utt_prefix_speaker(utt_id: str) -> str:
    """Kaldi convention: utterance ids start with the speaker id; take the part before the first '-' (or '_')."""
    for sep in "-_":
        if sep in utt_id:
            return utt_id.split(sep, 1)[0]
    return utt_id


def word_tokens(text: str) -> List[str]:
    return text.split()


def char_tokens(text: str) -> List[str]:
    """Characters of each word, ``<space>`` between words: ESPnet's ``--token_type char`` CER input."""
    tokens: List[str] = []
    for i, word in enumerate(text.split()):
        if i:
            tokens.append(WORD_BOUNDARY)
        tokens.extend(word)
    return tokens


TOKENIZERS = {"word": word_tokens, "char": char_tokens}


# ---------------------------------------------------------------- per-utterance counts


@dataclasses.dataclass(frozen=True)
class UtteranceCounts:
    """Alignment counts of one system on one test set, one entry per reference utterance (reference order)."""

    utt_ids: Tuple[str, ...]
    ref: np.ndarray  # reference tokens per utterance
    sub: np.ndarray
    dele: np.ndarray
    ins: np.ndarray

    COLUMNS: ClassVar[Tuple[str, ...]] = ("utt_id", "ref", "corr", "sub", "del", "ins", "err")  # per_utt.tsv

    @property
    def errors(self) -> np.ndarray:
        return self.sub + self.dele + self.ins

    @property
    def error_rate(self) -> float:
        """Errors / reference tokens, in percent (sclite's Err column)."""
        return 100.0 * float(self.errors.sum()) / float(self.ref.sum())

    @property
    def hyp_lengths(self) -> np.ndarray:
        """Hypothesis tokens per utterance (correct + substituted + inserted)."""
        return self.ref - self.dele + self.ins

    def length_checks(self) -> Dict[str, float]:
        """What shows a looping decoder: insertions per reference token (%), the longest hypothesis relative to its
        reference, and how many hypotheses are at least twice as long as their reference."""
        ratio = self.hyp_lengths / np.maximum(self.ref, 1)
        return {"insertion_rate": round(100.0 * float(self.ins.sum()) / float(self.ref.sum()), 4),
                "max_hyp_ref_ratio": round(float(ratio.max()), 4) if len(ratio) else 0.0,
                "hyp_at_least_twice_ref": int((ratio >= 2.0).sum())}

    def totals(self) -> Dict[str, int]:
        ref, sub, dele, ins = (int(a.sum()) for a in (self.ref, self.sub, self.dele, self.ins))
        return {"utts": len(self.utt_ids), "ref": ref, "corr": ref - sub - dele, "sub": sub, "del": dele,
                "ins": ins, "err": sub + dele + ins}

    def write_tsv(self, path: Path) -> None:
        rows = ["\t".join(self.COLUMNS)]
        for i, utt in enumerate(self.utt_ids):
            ref, sub, dele, ins = (int(a[i]) for a in (self.ref, self.sub, self.dele, self.ins))
            rows.append("\t".join(map(str, (utt, ref, ref - sub - dele, sub, dele, ins, sub + dele + ins))))
        atomic_write_text(path, "\n".join(rows) + "\n")

    @classmethod
    def read_tsv(cls, path: Path) -> "UtteranceCounts":
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        if not lines or tuple(lines[0].split("\t")) != cls.COLUMNS:
            raise ScoringError(f"{path}: not a per_utt.tsv written by espnet_peft.recipe.scoring "
                               f"(header should be {' '.join(cls.COLUMNS)}); re-run espnet_peft.bin.score")
        rows = [line.split("\t") for line in lines[1:] if line]
        columns = {name: np.array([int(r[i]) for r in rows], dtype=np.int64) for i, name in enumerate(cls.COLUMNS)
                   if name != "utt_id"}
        return cls(tuple(r[0] for r in rows), columns["ref"], columns["sub"], columns["del"], columns["ins"])

    def aligned_to(self, utt_ids: Sequence[str], what: str) -> "UtteranceCounts":
        """The same counts in the order of ``utt_ids``, which must be the same utterance set."""
        index = {u: i for i, u in enumerate(self.utt_ids)}
        if set(index) != set(utt_ids):
            only_here = sorted(set(index) - set(utt_ids))[:5]
            only_there = sorted(set(utt_ids) - set(index))[:5]
            raise ScoringError(f"{what}: utterance sets differ (only here: {only_here}, only in the other: "
                               f"{only_there}); score both systems on the same reference text")
        order = np.array([index[u] for u in utt_ids], dtype=np.int64)
        return UtteranceCounts(tuple(utt_ids), self.ref[order], self.sub[order], self.dele[order], self.ins[order])


@dataclasses.dataclass
class ScoreResult:
    unit: str
    score_dir: Path
    counts: UtteranceCounts
    missing_hyp: List[str]
    extra_hyp: List[str]
    crosscheck: Dict[str, object]

    def summary(self) -> Dict[str, object]:
        return {"unit": self.unit, **self.counts.totals(), "error_rate": round(self.counts.error_rate, 4),
                **self.counts.length_checks(), "missing_hyp": self.missing_hyp, "extra_hyp": self.extra_hyp}


# ---------------------------------------------------------------- sclite


def find_sclite() -> str:
    """``$SCLITE``, else ``sclite`` on PATH, else Debian's /usr/lib/sctk/bin/sclite."""
    candidates = [os.environ.get("SCLITE"), shutil.which("sclite"), *SCLITE_FALLBACKS]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("sclite not found: apt-get install sctk")


def trn_ids(utt_ids: Sequence[str], speakers: Mapping[str, str]) -> Dict[str, str]:
    """{utt_id: "spk-uttid"} as ESPnet writes them. '-' in a speaker becomes '_': sclite's ``-i rm`` takes the
    speaker up to the first '-'. Raises on ids sclite cannot round-trip (it lowercases ids, parses up to ')')."""
    ids: Dict[str, str] = {}
    seen: Dict[str, str] = {}
    for utt in utt_ids:
        if utt not in speakers:
            raise ScoringError(f"utt2spk has no speaker for utterance {utt!r}; add it or leave --utt2spk out")
        if re.search(r"[()\s]", utt + speakers[utt]):
            raise ScoringError(f"utterance {utt!r} / speaker {speakers[utt]!r}: sclite ids cannot hold "
                               "parentheses or spaces; rename it in the data dir")
        ids[utt] = f"{speakers[utt].replace('-', '_')}-{utt}"
        clash = seen.setdefault(ids[utt].lower(), utt)
        if clash != utt:
            raise ScoringError(f"utterances {clash!r} and {utt!r} differ only in case, but sclite lowercases ids; "
                               "rename one")
    return ids


def write_trn(path: Path, tokens: Mapping[str, Sequence[str]], ids: Mapping[str, str]) -> None:
    lines = [f"{' '.join(tokens[utt])} ({ids[utt]})".lstrip() for utt in ids]
    atomic_write_text(path, "\n".join(lines) + "\n")


def run_sclite(score_dir: Path) -> str:
    """Run sclite on ``score_dir/{ref,hyp}.trn`` from inside the dir (so reports name ``hyp.trn``), return stdout."""
    cmd = [find_sclite(), "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm", "-o", "all", "stdout"]
    proc = subprocess.run(cmd, cwd=score_dir, capture_output=True, text=True, encoding="utf-8", errors="replace")
    return proc.stdout + proc.stderr  # sclite reports some input errors on stdout and still exits 0


_PRA = re.compile(r"^id: \((?P<id>[^)]*)\)\s*\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", re.MULTILINE)


def parse_sclite_utterances(report: str) -> Dict[str, Tuple[int, int, int, int]]:
    """{lowercased trn id: (C, S, D, I)} from the pra section (``id: (...)`` + ``Scores: (#C #S #D #I) ...``)."""
    return {m.group("id"): tuple(int(m.group(i)) for i in range(2, 6)) for m in _PRA.finditer(report)}


def parse_sclite_sum(report: str) -> Dict[str, int]:
    """Totals from the rsum table's ``Sum`` row (counts; the sum table's ``Sum/Avg`` row holds rounded percents)."""
    for line in report.splitlines():
        cells = line.strip().strip("|").split("|")
        if len(cells) == 3 and cells[0].strip() == "Sum":
            snt_wrd, scores = cells[1].split(), cells[2].split()
            names = ("snt", "ref", "corr", "sub", "del", "ins", "err", "snt_err")
            return dict(zip(names, map(int, snt_wrd + scores)))
    raise RuntimeError("sclite report has no 'Sum' row (rsum table)")


def sclite_counts(report: str, ids: Mapping[str, str], ref_tokens: Mapping[str, Sequence[str]],
                  score_dir: Path) -> UtteranceCounts:
    """Per-utterance counts from sclite's report, checked against its Sum row and our own reference token counts."""
    try:
        total = parse_sclite_sum(report)
    except RuntimeError:
        head = "\n".join(report.strip().splitlines()[:5])
        raise RuntimeError(f"sclite failed in {score_dir} (see result.txt):\n{head}") from None
    per_utt = parse_sclite_utterances(report)
    missing = [utt for utt, trn in ids.items() if trn.lower() not in per_utt]
    if missing:
        raise RuntimeError(f"{score_dir}/result.txt: no alignment for {missing[:5]}; sclite output not understood")
    rows = np.array([per_utt[ids[utt].lower()] for utt in ids], dtype=np.int64).reshape(-1, 4)
    counts = UtteranceCounts(tuple(ids), rows[:, 0] + rows[:, 1] + rows[:, 2], rows[:, 1], rows[:, 2], rows[:, 3])
    ours = np.array([len(ref_tokens[utt]) for utt in ids], dtype=np.int64)
    bad = [utt for utt, a, b in zip(ids, counts.ref, ours) if a != b]
    if bad:
        raise RuntimeError(f"{score_dir}: sclite counted different reference tokens for {bad[:5]} than were written")
    mine = counts.totals()
    if any(mine[k] != total[k] for k in ("ref", "corr", "sub", "del", "ins", "err")):
        raise RuntimeError(f"{score_dir}/result.txt: per-utterance scores {mine} do not add up to the Sum row {total}")
    return counts


# ---------------------------------------------------------------- jiwer cross-check


def jiwer_counts(ref_tokens: Sequence[Sequence[str]], hyp_tokens: Sequence[Sequence[str]]) -> np.ndarray:
    """Per-utterance (ref, S, D, I) rows from jiwer's unit-cost alignment of the same token sequences."""
    try:
        import jiwer
    except ImportError:
        raise RuntimeError("jiwer not installed (needed for the sclite cross-check): pip install jiwer==4.0.0") \
            from None
    out = jiwer.process_words([" ".join(r) for r in ref_tokens], [" ".join(h) for h in hyp_tokens])
    rows = []
    for ref, chunks in zip(out.references, out.alignments):
        sdi = {"substitute": 0, "delete": 0, "insert": 0}
        for chunk in chunks:
            if chunk.type in sdi:
                span = chunk.hyp_end_idx - chunk.hyp_start_idx if chunk.type == "insert" else \
                    chunk.ref_end_idx - chunk.ref_start_idx
                sdi[chunk.type] += span
        rows.append((len(ref), sdi["substitute"], sdi["delete"], sdi["insert"]))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _sdi(row: np.ndarray) -> Dict[str, int]:
    sub, dele, ins = (int(x) for x in row)
    return {"sub": sub, "del": dele, "ins": ins, "err": sub + dele + ins}


def jiwer_crosscheck(counts: UtteranceCounts, ref_tokens: Mapping[str, Sequence[str]],
                     hyp_tokens: Mapping[str, Sequence[str]]) -> Dict[str, object]:
    """Compare sclite's counts with jiwer's on the same tokens: reference counts must agree (else RuntimeError);
    error counts may differ, and every differing utterance is listed with both S/D/I."""
    utts = counts.utt_ids
    jw = jiwer_counts([ref_tokens[u] for u in utts], [hyp_tokens[u] for u in utts])
    if int(jw[:, 0].sum()) != int(counts.ref.sum()) or not np.array_equal(jw[:, 0], counts.ref):
        raise RuntimeError(f"jiwer counts {int(jw[:, 0].sum())} reference tokens, sclite {int(counts.ref.sum())}: "
                           "the two tools did not read the same references")
    sc = np.stack([counts.sub, counts.dele, counts.ins], axis=1)
    differ = np.flatnonzero((sc != jw[:, 1:]).any(axis=1))
    utterances = [{"utt_id": utts[i], "ref": " ".join(ref_tokens[utts[i]]), "hyp": " ".join(hyp_tokens[utts[i]]),
                   "sclite": _sdi(sc[i]), "jiwer": _sdi(jw[i, 1:])} for i in differ]
    unexplained = [u["utt_id"] for u in utterances if u["sclite"]["err"] < u["jiwer"]["err"]]
    sclite_total, jiwer_total = _sdi(sc.sum(axis=0)), _sdi(jw[:, 1:].sum(axis=0))
    if not utterances:
        explanation = "identical per-utterance S/D/I"
    elif sclite_total["err"] == jiwer_total["err"]:
        explanation = ("same error totals, different S/D/I split on some utterances: sclite breaks equal-error ties "
                       "by its weights (a deletion + insertion pair costs 6 < two substitutions 8)")
    else:
        explanation = ("sclite minimises 4S + 3(D + I), jiwer S + D + I, so sclite may accept more errors for fewer "
                       "substitutions (5 S -> 3 D + 3 I); per utterance sclite's count is >= jiwer's")
    return {
        "ref_tokens": {"sclite": int(counts.ref.sum()), "jiwer": int(jw[:, 0].sum())},
        "errors": {"sclite": sclite_total, "jiwer": jiwer_total},
        "equal": sclite_total == jiwer_total,
        "sclite_costs": SCLITE_COSTS, "jiwer_costs": {"sub": 1, "del": 1, "ins": 1},
        "explanation": explanation,
        "unexplained": unexplained,  # utterances where sclite counts fewer errors than a minimum-edit alignment
        "differing_utterances": utterances,
    }


# ---------------------------------------------------------------- scoring


def score_tokens(ref_tokens: Mapping[str, Sequence[str]], hyp_tokens: Mapping[str, Sequence[str]],
                 speakers: Mapping[str, str], score_dir: Path, unit: str) -> ScoreResult:
    """Score already normalised + tokenised references and hypotheses (same keys, reference order) in score_dir."""
    score_dir = Path(score_dir)
    score_dir.mkdir(parents=True, exist_ok=True)
    ids = trn_ids(list(ref_tokens), speakers)
    write_trn(score_dir / "ref.trn", ref_tokens, ids)
    write_trn(score_dir / "hyp.trn", hyp_tokens, ids)
    report = run_sclite(score_dir)
    atomic_write_text(score_dir / "result.txt", report)
    counts = sclite_counts(report, ids, ref_tokens, score_dir)
    counts.write_tsv(score_dir / "per_utt.tsv")
    crosscheck = jiwer_crosscheck(counts, ref_tokens, hyp_tokens)
    atomic_write_text(score_dir / "jiwer_crosscheck.json", json.dumps(crosscheck, indent=2, ensure_ascii=False) + "\n")
    return ScoreResult(unit, score_dir, counts, [], [], crosscheck)


def score_files(ref_path: Path, hyp_path: Path, out_dir: Path, utt2spk_path: Optional[Path] = None,
                units: Sequence[str] = UNITS, normalizer: str = "default") -> Dict[str, ScoreResult]:
    """Score a Kaldi ``text`` hypothesis file against a reference one into ``out_dir/score_{wer,cer}``.

    Every reference utterance is scored: a missing hypothesis counts as empty (all deletions) and is listed in
    ``summary.json``; hypotheses for utterances not in the reference are ignored and listed too. A reference that is
    empty after normalisation is an error (its WER is undefined). ``normalizer`` names the function of
    ``text_norm.NORMALIZERS`` both sides go through (``whisper_english`` for a Whisper model's cased, punctuated text).
    """
    refs, hyps = read_table(ref_path), read_table(hyp_path)
    if not refs:
        raise ScoringError(f"{ref_path}: no utterances")
    speakers = read_table(utt2spk_path) if utt2spk_path else {u: utt_prefix_speaker(u) for u in refs}
    normalize_text = NORMALIZERS[normalizer]
    norm_refs = {utt: normalize_text(words) for utt, words in refs.items()}
    empty = [utt for utt, words in norm_refs.items() if not words]
    if empty:
        raise ScoringError(f"{ref_path}: utterance {empty[0]!r} has an empty reference after normalisation "
                           f"({len(empty)} such: {empty[:5]}); drop it from the test set or fix its transcript")
    norm_hyps = {utt: normalize_text(hyps.get(utt, "")) for utt in refs}
    missing = [utt for utt in refs if utt not in hyps]
    extra = [utt for utt in hyps if utt not in refs]
    results = {}
    for unit in units:
        tokenize = TOKENIZERS[unit]
        result = score_tokens({u: tokenize(t) for u, t in norm_refs.items()},
                              {u: tokenize(t) for u, t in norm_hyps.items()},
                              speakers, Path(out_dir) / SCORE_DIRS[unit], unit)
        result = dataclasses.replace(result, missing_hyp=missing, extra_hyp=extra)
        summary = {**result.summary(), "normalizer": normalizer}
        atomic_write_text(result.score_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        inputs = {"hyp": hyp_path, "ref": ref_path, **({"utt2spk": utt2spk_path} if utt2spk_path else {})}
        record = made_from(inputs, normalizer=normalizer, unit=unit, hyp=str(Path(hyp_path).resolve()))
        mark_made_from(result.score_dir, record, outputs=["per_utt.tsv", "summary.json"])  # last: the score is done
        results[unit] = result
    return results


def check_score_dir(score_dir: Path) -> None:
    """Refuse, by name, a score dir that is not a complete score of the hypotheses as they are now: scoring never
    finished, ``per_utt.tsv`` / ``summary.json`` were edited, the hypothesis file changed after it was scored, or it
    changed after it was decoded (its decode dir's ``made_from.json``)."""
    score_dir = Path(score_dir)
    stored = read_record(score_dir)
    if stored is None:
        raise ProvenanceError(f"{score_dir} has no made_from.json: the scoring did not finish, or an older version "
                              "wrote it; score again (recipe stage 9, or python -m espnet_peft.bin.score)")
    changed = changed_outputs(score_dir, stored)
    if changed:
        raise ProvenanceError(f"{changed} changed after it was scored (edited by hand?); score again (recipe stage 9)")
    hyp = (stored.get("settings") or {}).get("hyp")
    if hyp is None:
        return
    hyp = Path(hyp)
    if not hyp.is_file() or file_sha256(hyp) != stored["inputs"].get("hyp"):
        raise ProvenanceError(f"{hyp} changed after it was scored into {score_dir}; score again (recipe stage 9)")
    decoded = read_record(hyp.parent)
    if decoded is not None and changed_outputs(hyp.parent, decoded):
        raise ProvenanceError(f"{hyp} changed after it was decoded (edited by hand?), and its scores came from the "
                              "edit; decode again (recipe stage 8 redoes it), then score (stage 9)")


def read_score_dir(decode_set_dir: Path, unit: str = "word") -> UtteranceCounts:
    """Per-utterance counts that ``score_files`` wrote under ``decode_set_dir`` (the ``--out`` of the scoring CLI)."""
    path = Path(decode_set_dir) / SCORE_DIRS[unit] / "per_utt.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: score the decode first (python -m espnet_peft.bin.score "
                                f"--ref data/<set>/text --hyp <decode>/text --out {decode_set_dir})")
    check_score_dir(path.parent)
    return UtteranceCounts.read_tsv(path)
