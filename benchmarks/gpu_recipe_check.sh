#!/usr/bin/env bash
# The recipe on a GPU, against the same recipe's CPU results:
#   * stages 6 and 8 with --ngpu 1 (batched greedy decoding with --device cuda, each decoding job asking the launcher for
#     one GPU), on finished `run.sh --quick` dirs of an OWSM and an OWSM-CTC run: the hypotheses must equal the CPU's;
#   * stage 13 with --analysis_device cuda (OWSM dir): the analysis numbers must match the CPU's (float tolerance);
#   * the shipped source model decoding source_test in batches on cuda, timed, against its committed CPU hypotheses.
#
#   benchmarks/gpu_recipe_check.sh OUT_DIR S2T_DIR CTC_DIR SHIPPED_DIR
#
# S2T_DIR / CTC_DIR: copies of egs2/synthetic/peft1 after `./run.sh --quick [--task s2t_ctc] ... --stop_stage 13`
# with the options in RUN_OPTS_S2T / RUN_OPTS_CTC; SHIPPED_DIR: dump/raw/source_test (and its audio) and CPU
# hypotheses of the shipped model in cpu_<name>/text (stage 6's, one per ESPnet release); the model itself is fetched
# from egs2/synthetic/peft1/source_model.
# Writes OUT_DIR/gpu_recipe_check.json and the logs. Needs python3 with torch (CUDA) and the package on PYTHONPATH.
# DEVICE=cpu runs the same steps on the CPU (a dry run of this script where no GPU is).
set -euo pipefail
out=$(realpath -m "$1"); s2t=$(realpath "$2"); ctc=$(realpath "$3"); shipped=$(realpath "$4")
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
ngpu=$([ "${device}" = cpu ] && echo 0 || echo 1)
mkdir -p "${out}"
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}" PYTHONUNBUFFERED=1
# the options the dirs were made with (shell words, as typed): the experiment list must be the same
RUN_OPTS_S2T=${RUN_OPTS_S2T:-'--methods "lora full" --target_domains child --sweep ""'}
RUN_OPTS_CTC=${RUN_OPTS_CTC:-'--task s2t_ctc --methods "lora full" --target_domains child --sweep ""'}

keep_cpu_results() {  # <recipe dir>: the CPU hypotheses aside, and their markers gone so that stages 6/8 decode again
  (cd "$1" && for text in exp/source/decode_zeroshot/*/text exp/*/decode/*/text; do
     # the CPU's copy once: a second run of this script must not take the GPU's hypotheses for the CPU's
     mkdir -p "cpu/$(dirname "${text}")" && cp -n "${text}" "cpu/${text}" && rm -f "$(dirname "${text}")/decode_info.json"
   done)
}

for kind in s2t ctc; do
  if [ "${kind}" = s2t ]; then dir=${s2t}; opts=${RUN_OPTS_S2T}; else dir=${ctc}; opts=${RUN_OPTS_CTC}; fi
  keep_cpu_results "${dir}"
  log=${out}/stages6-8_${kind}.log
  (cd "${dir}" && eval ./run.sh --quick --python "${python}" --nj 1 --ngpu "${ngpu}" "${opts}" --stage 6 --stop_stage 8) \
    > "${log}" 2>&1 || { tail -40 "${log}"; exit 1; }
done

# stage 13 on the GPU: every analysis again (its made_from.json names the device, so the CPU result is not reused)
(cd "${s2t}" && for f in exp/analysis/*/*/analysis.json; do mkdir -p "cpu/$(dirname "${f}")"; cp -n "${f}" "cpu/${f}"; done
 eval ./run.sh --quick --python "${python}" --nj 1 "${RUN_OPTS_S2T}" --stage 13 --stop_stage 13 \
   --analysis_device "${device}") > "${out}/stage13_s2t.log" 2>&1 || { tail -40 "${out}/stage13_s2t.log"; exit 1; }

# the shipped model: batched joint CTC/attention greedy on cuda, as stage 6 runs it with --ngpu 1
packed=${repo}/egs2/synthetic/peft1/source_model/owsm_synth_ebf.zip
(cd "${shipped}" && "${python}" -m espnet_peft.bin.fetch_source_model --source "${packed}" --out exp/source \
   --token_dir data/token_list --task s2t --sha256 "$(awk '{print $1}' "${packed%/*}/SHA256SUMS")" && for batch in 64 300; do
   "${python}" -m espnet_peft.bin.s2t_batch_inference --s2t_train_config exp/source/config.yaml \
     --s2t_model_file exp/source/model.pth --device "${device}" --batch_size "${batch}" --ctc_weight 0.5 \
     --set dump/raw/source_test "gpu_b${batch}/source_test"
 done) > "${out}/shipped_source_test.log" 2>&1 || { tail -40 "${out}/shipped_source_test.log"; exit 1; }

"${python}" - "${out}" "${s2t}" "${ctc}" "${shipped}" "${device}" <<'EOF'
import json, math, sys
from pathlib import Path

import torch

out, s2t, ctc, shipped = (Path(p) for p in sys.argv[1:5])
device = sys.argv[5]


def table(path):
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition(" ")
        rows[key] = text.strip()
    return rows


def compare_decodes(recipe):
    sets = {}
    for cpu in sorted((recipe / "cpu").rglob("text")):
        gpu = recipe / cpu.relative_to(recipe / "cpu")
        info = json.loads((gpu.parent / "decode_info.json").read_text())
        a, b = table(cpu), table(gpu)
        sets[str(gpu.relative_to(recipe))] = {"utterances": len(a), "identical": sum(a[k] == b.get(k) for k in a),
                                              "device": info["device"], "decode_time_s": info["decode_time_s"]}
    return sets


def numbers(value, prefix=""):
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{prefix}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{prefix}[{i}]").items()}
    return {}


def compare_analyses(recipe):
    result = {}
    for cpu in sorted((recipe / "cpu" / "exp" / "analysis").rglob("analysis.json")):
        gpu = recipe / cpu.relative_to(recipe / "cpu")
        a, b = numbers(json.loads(cpu.read_text())), numbers(json.loads(gpu.read_text()))
        shared = [k for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])
                  and "timing" not in k and "device" not in k]
        worst = max(shared, key=lambda k: abs(a[k] - b[k]) / max(1.0, abs(a[k])))
        result[str(gpu.relative_to(recipe))] = {
            "numbers_compared": len(shared),
            "max_difference_abs_below_1_rel_above": abs(a[worst] - b[worst]) / max(1.0, abs(a[worst])), "at": worst,
            "cpu": a[worst], "gpu": b[worst]}
    return result


cpu_runs = {ref.name: {"text": table(ref / "text"), "info": json.loads((ref / "decode_info.json").read_text())}
            for ref in sorted(shipped.glob("cpu_*"))}
shipped_runs = {name: {"batch_size": run["info"]["batch_size"], "decode_time_s": run["info"]["decode_time_s"],
                       "device": run["info"]["device"]} for name, run in cpu_runs.items()}
for run in sorted(shipped.glob("gpu_b*/source_test")):
    info = json.loads((run / "decode_info.json").read_text())
    hyps = table(run / "text")
    shipped_runs[run.parent.name] = {"batch_size": info["batch_size"], "decode_time_s": info["decode_time_s"],
                                     "device": info["device"], "utterances": len(hyps),
                                     **{f"identical_to_{name}": sum(ref["text"][k] == hyps.get(k) for k in ref["text"])
                                        for name, ref in cpu_runs.items()}}
report = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "cpu", "torch": torch.__version__,
          "quick_s2t_stages_6_8": compare_decodes(s2t), "quick_ctc_stages_6_8": compare_decodes(ctc),
          "quick_s2t_stage_13": compare_analyses(s2t),
          "quick_s2t_stage_13_reran": "skip exp/analysis" not in (out / "stage13_s2t.log").read_text(),
          "shipped_model_source_test": shipped_runs}
(out / "gpu_recipe_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
EOF
