"""espnet_peft.bin.stage_times: stage durations from a recipe log."""

import pytest

from espnet_peft.bin.stage_times import stage_times

LOG = """\
2026-12-03T20:00:00 (peft.sh:140) Stage 1: data preparation (local/data.sh) -> data/{a,b}
synthesize: 100%
2026-12-03T20:03:30 (peft.sh:150) Stage 2: validate audio and transcripts
2026-12-03T20:03:35 (peft.sh:170) Stage 7: fine-tuning (lora) at a budget of 40000
2026-12-03T20:03:40 (peft.sh:98) training exp/child_lora_s0 (log: exp/child_lora_s0/train.log)
2026-12-03T20:20:05 (peft.sh:300) Done: see RESULTS.md
"""


def test_each_stage_lasts_until_the_next_and_the_last_until_the_end() -> None:
    rows = stage_times(LOG.splitlines())
    assert [(n, s) for n, _, _, s in rows] == [(1, 210.0), (2, 5.0), (7, 990.0)]
    assert rows[0][1].startswith("data preparation")


def test_a_log_without_recipe_lines_is_an_error() -> None:
    with pytest.raises(ValueError, match="no timestamped peft.sh lines"):
        stage_times(["hello"])


def test_the_json_record_renders_the_same_table_as_the_log(tmp_path, capsys) -> None:
    import json

    from espnet_peft.bin.stage_times import main, stage_table

    log = tmp_path / "demo.log"
    log.write_text(LOG)
    main([str(log), "--json", str(tmp_path / "times.json")])
    printed = capsys.readouterr().out.strip()
    times = json.loads((tmp_path / "times.json").read_text())
    assert stage_table(times) == printed
    assert [row["seconds"] for row in times["stages"]] == [210.0, 5.0, 990.0] and times["total_seconds"] == 1205.0
    assert printed.splitlines()[2] == "| 1 | data preparation | 3 min 30 s |"
