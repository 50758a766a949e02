#!/usr/bin/env bash
# peft_librispeech_source.sh with an OWSM model from the hub as the source model: shared by the corpus recipes
# (egs2/<corpus>/peft1/run.sh add --target_domains), symlinked into each like peft.sh.
# --owsm_model <name> (default owsm_v3.1_ebf_base) picks one of conf/owsm/models.yaml: its hub tag, its matched
# budget, its task (s2t, or s2t_ctc for OWSM-CTC) and its settings in conf/owsm/<name>/ (the *_8gpu files with --ngpu 8 or more). Options given after it win
# (e.g. --source_model <dir>, --budget N, --finetune_config FILE).
set -euo pipefail

owsm_model=owsm_v3.1_ebf_base
ngpu=1
args=()
while (($#)); do
  case $1 in
    --owsm_model) owsm_model=$2; shift 2 ;;
    --ngpu) ngpu=$2; args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
# the model's hub_tag, budget and task lines in conf/owsm/models.yaml (top-level "<name>:", then indented "key: value")
read -r hub_tag budget task < <(awk -v model="${owsm_model}:" '$0 == model { inside = 1; next } /^[^ #]/ { inside = 0 }
  inside && $1 == "hub_tag:" { tag = $2 } inside && $1 == "budget:" { n = $2 } inside && $1 == "task:" { t = $2 }
  END { if (tag && n && t) print tag, n, t }' conf/owsm/models.yaml) \
  || { echo "$0: --owsm_model ${owsm_model} is not in conf/owsm/models.yaml" >&2; exit 1; }
gpus=
if [ "${ngpu}" -ge 8 ]; then gpus=_8gpu; fi

exec ./peft_librispeech_source.sh \
    --source_model "${hub_tag}" --budget "${budget}" --task "${task}" --peft_conf_dir conf/owsm/peft \
    --finetune_config "conf/owsm/${owsm_model}/finetune${gpus}.yaml" \
    --full_finetune_config "conf/owsm/${owsm_model}/finetune_full${gpus}.yaml" \
    "${args[@]}"
