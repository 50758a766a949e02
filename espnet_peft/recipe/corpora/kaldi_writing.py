"""Writing a preparer's sets as Kaldi dirs, with the output options every corpus shares.

:func:`write_sets` checks the sets (unique utterance ids, speaker-disjoint, ids prefixed by their speaker), has
:func:`~espnet_peft.recipe.corpora.audio.materialise` list or convert the audio, writes each set through
:mod:`espnet_peft.utils.kaldi_data` (sorted tables, derived ``spk2utt``, one ``utt2<key>`` per ``Utterance.info``
key) and checks it with ``check_data_dir`` (tables only; stage 2/3 of ``peft.sh`` decode the audio). A summary
and the drop reasons go to ``<out>/local/<corpus>/prep_report.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from espnet_peft.atomic import atomic_write_text
from espnet_peft.recipe.corpora.audio import FS, materialise
from espnet_peft.recipe.corpora.records import CorpusError, Drops, Utterance, safe_id
from espnet_peft.utils.kaldi_data import DataDir, check_data_dir, write_data_dir, write_table

log = logging.getLogger("espnet_peft.corpora")


@dataclass(frozen=True)
class OutputOptions:
    """Where and how every preparer writes (the corpus CLIs' ``--out --wav_dir --fs --nj --convert``).

    ``convert``: ``auto`` lists 16-bit mono WAV/FLAC at ``fs`` as they are, ``always`` converts everything.
    """

    out: Path
    wav_dir: Path | None = None  # None: <out>/local/<corpus>/wav
    fs: int = FS
    nj: int = 2  # parallel sox processes
    convert: str = "auto"

    def wav_dir_for(self, corpus: str) -> Path:
        return self.wav_dir if self.wav_dir is not None else Path(self.out) / "local" / corpus / "wav"

    def report_path(self, corpus: str) -> Path:
        return Path(self.out) / "local" / corpus / "prep_report.json"


def _check_sets(sets: Mapping[str, Sequence[Utterance]]) -> None:
    seen: dict[str, str] = {}
    speaker_set: dict[str, str] = {}
    for name, utts in sets.items():
        for utt in utts:
            if utt.utt_id in seen:
                raise CorpusError(f"utterance id {utt.utt_id} is in {seen[utt.utt_id]} and {name}")
            seen[utt.utt_id] = name
            if speaker_set.setdefault(utt.speaker, name) != name:
                raise CorpusError(f"speaker {utt.speaker} is in {speaker_set[utt.speaker]} and {name}: "
                                  "sets must be speaker-disjoint")
            if not utt.utt_id.startswith(utt.speaker):
                raise CorpusError(f"utterance id {utt.utt_id} does not start with its speaker id {utt.speaker}")


def write_sets(sets: Mapping[str, Sequence[Utterance]], output: OutputOptions, *, corpus: str,
               drops: Drops | None = None, sph2pipe: str | None = None,
               extra_report: Mapping | None = None) -> dict[str, dict]:
    """Write ``<output.out>/<name>/`` for every ``name -> utterances`` (existing dirs are replaced), the report
    ``output.report_path(corpus)``, and return a summary. Converted audio goes to ``output.wav_dir_for(corpus)``.

    Raises if an utterance id repeats, if a speaker is in two sets, if a set ends up empty, or if
    ``check_data_dir`` (tables only) finds a problem.
    """
    drops = drops if drops is not None else Drops()
    _check_sets(sets)
    everything = [u for utts in sets.values() for u in utts]
    locations = materialise(everything, output.wav_dir_for(corpus), output.fs, output.nj, output.convert, sph2pipe,
                            drops)
    summary: dict[str, dict] = {}
    for name, utts in sets.items():
        kept = [u for u in utts if u.utt_id in locations]
        if not kept:
            raise CorpusError(f"{output.out / name}: no utterance left (see the drop reasons: {drops.as_dict()})")
        data = DataDir(wav_scp={u.utt_id: locations[u.utt_id] for u in kept},
                       text={u.utt_id: u.text for u in kept},
                       utt2spk={u.utt_id: u.speaker for u in kept})
        target = Path(output.out) / name
        if target.exists():
            shutil.rmtree(target)
        write_data_dir(target, data)
        for key in sorted({k for u in kept for k in u.info}):
            write_table(target / f"utt2{key}", {u.utt_id: safe_id(u.info[key]) or "unknown"
                                                for u in kept if key in u.info})
        problems = check_data_dir(target, fs=output.fs, audio=False)
        if problems:
            raise CorpusError(f"{target}: " + "; ".join(problems[:10]))
        summary[name] = {"utterances": len(kept), "speakers": len({u.speaker for u in kept})}
        log.info("%s: %d utterances, %d speakers", target, len(kept), summary[name]["speakers"])
    atomic_write_text(output.report_path(corpus), json.dumps({"sets": summary, "dropped": drops.as_dict(),
                                                              **(extra_report or {})}, indent=2, sort_keys=True)
                      + "\n")
    for reason, count in sorted(drops.counts.items()):
        log.info("dropped %d: %s (e.g. %s)", count, reason, drops.examples[reason][0])
    return summary
