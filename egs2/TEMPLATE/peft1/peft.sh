#!/usr/bin/env bash
# Shared stage driver of the espnet-peft recipes: from corpus to a learning-vs-forgetting report.
# Recipes (egs2/<corpus>/peft1/run.sh) set their data sets and call this script; every option below can be
# overridden on the command line (--name value). Each stage logs what it runs, writes under data/, dump/ and exp/,
# skips finished work (its made_from.json record, or the final file) and can be re-run from --stage N.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*" >&2; }
min() { local a=$1 b=$2; echo $((a < b ? a : b)); }

# ----- options -----------------------------------------------------------------------------------------------------
stage=1
stop_stage=13
nj=2                      # parallel data / decoding jobs
ngpu=0                    # GPUs per training job; > 0 also decodes (stages 6, 8) on one GPU per decoding job
train_jobs=1              # fine-tuning runs at once in stage 7 (on CPU: one per core; under Slurm: as many as fit)
num_nodes=1               # nodes per training job (Slurm: srun across nodes)
python=python3
task=s2t                  # s2t: OWSM (encoder-decoder); s2t_ctc: OWSM-CTC (encoder + CTC, greedy CTC decoding);
                          # asr: ESPnet's Whisper ASR model (source_config: encoder/decoder whisper, made in stage 5)
token_type=bpe            # asr: the Whisper token type (whisper_en, whisper_multilingual)
pad_to_window=false       # true: every dumped utterance zero-padded to speech_length (models with no padding mask,
                          # such as Whisper's encoder: batching then changes no input)
score_normalizer=default  # stage 9, both texts: default (lowercase, punctuation out) or whisper_english
decode_maxlenratio=0.0    # decoding's length limit (ESPnet's maxlenratio: 0 the encoder length, < 0 that many tokens)
methods=                  # empty: every adapter of the tuner registry (espnet_peft.tuners), then full fine-tuning
budget=20000              # trainable parameters per adapted model (all methods matched within 5%)
seeds="0"                 # training seeds: every method's default config runs once per seed
sweep=                    # "method:field=v1,v2,..." specs (spaces or ';' between): one run per value, first seed only
target_domains="child accent"   # each domain D uses sets ${D}_train ${D}_dev ${D}_test
source_train_set=source_train
source_dev_set=source_dev
source_test_sets=source_test    # forgetting is measured on these (the report and the analysis use the first)
source_model_test_sets=   # more source-domain sets that only the source model is decoded on (stage 6), e.g. new
                          # sentences read by the training voices: in-domain generalisation of the source model
local_data_opts=          # options passed to local/data.sh
source_model=             # empty: pretrain the embedded model; a dir (config.yaml + model.pth), a packed model
                          # (espnet2.bin.pack zip) or a hub tag
source_sha256=            # expected sha256 of a packed --source_model (a shipped model): refused if it differs
retrain_source=false      # true: train the source model here (stages 4-5) even when --source_model is given
source_config=conf/train_source.yaml
source_continue_config=   # non-empty: stage 5 trains on from the source model's averaged checkpoint, in
                          # exp/source/continued, with these keys over its config.yaml (e.g. SpecAugment)
finetune_config=conf/finetune.yaml
full_finetune_config=conf/finetune_full.yaml
peft_conf_dir=conf/peft   # <method>.yaml holds that method's adapter_conf (budget is added here)
bpe_vocab_size=300
speech_length=6           # seconds: OWSM-style models pad/trim every input to this
min_sec=0.3
max_sec=5.5
fs=16000
lang_token="<eng>"
task_token="<asr>"
decoder=batch_greedy      # batch_greedy: espnet_peft.bin.s2t_batch_inference (many utterances per pass; ESPnet's
                          # beam-1 choices; greedy CTC for s2t_ctc); espnet: espnet2.bin.s2t_inference (s2t) or
                          # espnet2.bin.s2t_inference_ctc (s2t_ctc) + inference_args
decode_ctc_weight=0.5     # batch_greedy, s2t: joint CTC/attention greedy (CTC rescores the decoder's 10 best tokens
                          # per step), which does not loop; 0: the decoder alone (= s2t_inference --beam_size 1)
decode_word_penalty=0     # batch_greedy, s2t: subtracted from the score of every piece that opens a word (a word
                          # insertion penalty; 0: ESPnet's choices)
decode_batch_size=64      # utterances per forward pass of batch_greedy
inference_args=           # decoder=espnet only; empty: greedy ("--beam_size 1 --ctc_weight 0.0 --maxlenratio 0.0"
                          # for s2t, "--beam_size 1" for s2t_ctc)
# stage 13: any names of python -m espnet_peft.bin.analyze --help
analyses="cka,lens,contribution,branches,energy,decoder_drift,decoder_contribution,decoder_branches"
analysis_max_utts=100     # source-domain test utterances per analysis
seed_analyses=             # analyses of every later seed's models too (e.g. "cka,decoder_drift": intervals over
                          # seeds for the drift, espnet_peft.analysis.seed_intervals); empty: the first seed only
analysis_device=cpu       # stage 13's torch device (cuda: its job asks the launcher for one GPU)
help_message="Usage: $0 [--stage N] [--stop_stage N] [--methods \"lora ssvd_o\"] [--budget N] [--seeds \"0 1 2\"]
  [--sweep \"ssvd_o:outer_share=0,0.5,1 lora:alpha=8,32\"] [--nj N] [--ngpu N] [--num_nodes N] [--train_jobs N]
  [--analysis_device cpu|cuda] [--source_model DIR|TAG] [--task s2t|s2t_ctc|asr] [--target_domains \"child accent\"] ...
Stages: 1 data prep, 2 validate, 3 filter + training text, 4 tokens, 5 source model, 6 zero-shot decode,
  7 fine-tune, 8 decode, 9 score, 10 figures, 11 merge + export adapters, 12 report,
  13 analysis (drift map, logit lens, layer contributions, adapter energy; RESULTS.md re-rendered with it)."

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

# What differs between OWSM and OWSM-CTC: the text prefix (<notimestamps>), the entry points and the checkpoint that
# training keeps (OWSM-CTC has no decoder accuracy: the lowest validation loss, which every config reports, as the
# OWSM-CTC fine-tuning configs in conf/owsm choose)
case "${task}" in
  s2t) best_criterion=valid,acc,max; default_inference_args="--beam_size 1 --ctc_weight 0.0 --maxlenratio ${decode_maxlenratio}" ;;
  s2t_ctc) best_criterion=valid,loss,min; default_inference_args="--beam_size 1" ;;
  asr) best_criterion=valid,acc,max; default_inference_args="--beam_size 1 --ctc_weight 0.0 --maxlenratio ${decode_maxlenratio}" ;;
  *) log "ERROR: --task ${task}: expected s2t (OWSM), s2t_ctc (OWSM-CTC) or asr (Whisper)"; exit 1 ;;
esac
best_name=$(IFS=, read -r _ metric _ <<< "${best_criterion}"; echo "${metric}")
best_checkpoint=valid.${best_name}.best.pth   # a single best checkpoint: averaging factor matrices is not averaging
                                              # the effective weights
inference_args=${inference_args:-${default_inference_args}}
decodes() { { [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; } || { [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; }; }
if [ "${task}" = s2t_ctc ] && [ "${decoder}" = espnet ] && decodes &&
   ! ${python} -c "from espnet_peft.compat import stock_ctc_cli_reads_mono_audio as ok; raise SystemExit(not ok())"; then
  log "ERROR: --decoder espnet: this ESPnet's s2t_inference_ctc rejects mono audio lists (\"speech of size (n, 1) is" \
      "not one utterance\", espnet 202611); decode with --decoder batch_greedy (the same greedy CTC, batched)"
  exit 1
fi
case "${task}" in
  s2t) inference_module=s2t_inference ;; s2t_ctc) inference_module=s2t_ctc_inference ;; asr) inference_module=asr_inference ;;
esac
# what the training and decoding entry points call the model's config and file (ESPnet's own option names)
model_arg=$([ "${task}" = asr ] && echo asr || echo s2t)
ref_text=$([ "${task}" = asr ] && echo text || echo text.ctc)   # the transcript a hypothesis is scored against

# Decoding runs on one GPU per job when training has GPUs (batched greedy: --device cuda; ESPnet's own: --ngpu 1).
if [ "${ngpu}" -gt 0 ]; then decode_gpus=1; decode_device=cuda; else decode_gpus=0; decode_device=cpu; fi
analysis_gpus=$([[ "${analysis_device}" == cuda* ]] && echo 1 || echo 0)

kill_tree() {  # <pid>: the process and everything it started, deepest first
  local child
  for child in $(pgrep -P "$1"); do kill_tree "${child}"; done
  kill -TERM "$1" 2>/dev/null || true
}
on_signal() {  # a killed run stops its own jobs (trainings, decodes and their launchers), not only itself
  trap - INT TERM HUP
  log "interrupted: stopping this run's jobs; re-running the same command resumes"
  for child in $(pgrep -P $$); do kill_tree "${child}"; done
  exit 130
}
trap on_signal INT TERM HUP
# `kill -9` of this driver cannot be trapped, and its jobs would run on: every job carries this run's id in its
# environment, and a sentinel stops the ones still alive once the driver is gone (a normal exit leaves none).
ESPNET_PEFT_RUN_ID="$$.$(date +%s%N)"
export ESPNET_PEFT_RUN_ID
jobs_of_this_run() {  # pids of the live processes whose environment holds this run's id
  local environ
  for environ in /proc/[0-9]*/environ; do
    if tr '\0' '\n' < "${environ}" 2>/dev/null | grep -qxF "ESPNET_PEFT_RUN_ID=${run_id}"; then
      environ=${environ#/proc/}; echo "${environ%/environ}"
    fi
  done
}
(
  trap - INT TERM HUP
  run_id=${ESPNET_PEFT_RUN_ID}
  unset ESPNET_PEFT_RUN_ID  # the sentinel's own children are not jobs of the run
  while kill -0 $$ 2>/dev/null; do sleep 2; done
  for signal in TERM KILL; do
    pids=$(jobs_of_this_run)
    [ -z "${pids}" ] && break
    # shellcheck disable=SC2086
    kill -"${signal}" ${pids} 2>/dev/null
    sleep 5
  done
) </dev/null >/dev/null 2>&1 &
disown  # not a job of this shell: `jobs` counts the trainings running, and `wait` waits for them only

need_tool() {  # <tool> <stages that use it>: checked before any stage runs, only when one of those stages will
  command -v "$1" >/dev/null || { log "ERROR: $1 not found (stages $2 use it): apt-get install ${1/sclite/sctk}" \
    "(or run 'make setup' at the repo root)"; exit 1; }
}
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then need_tool sox 1; fi
if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then need_tool sclite 9; fi

train_sets="${source_train_set}"
dev_sets="${source_dev_set}"
test_sets="${source_test_sets} ${source_model_test_sets}"
for d in ${target_domains}; do
  train_sets+=" ${d}_train"; dev_sets+=" ${d}_dev"; test_sets+=" ${d}_test"
done
all_sets="${train_sets} ${dev_sets} ${test_sets}"
first_source_test=${source_test_sets%% *}   # what the report's forgetting column and the analysis use
token_dir=data/token_list
source_dir=exp/source

# One line per experiment: "<domain> <method> <seed> <name> <settings> <label>"; name <domain>_<method>_s<seed>, or
# <domain>_<method>_<field><value>_s<seed> for a sweep point; settings "field=value,..." or "-" (the swept fields).
experiments() {
  ${python} -m espnet_peft.bin.list_experiments --domains "${target_domains}" --methods "${methods}" \
    --seeds "${seeds}" --sweep "${sweep}" --peft_conf_dir "${peft_conf_dir}" --budget "${budget}"
}

set_opts() {  # <settings>: as --set options (list_experiments allows no spaces in values)
  # shellcheck disable=SC2086
  [ "$1" = - ] || printf -- '--set %s ' ${1//,/ }
}

s2t_data_args() {  # <prefix> <set>: the four S2T inputs of a dumped set (speech + text for asr)
  local p=$1 dir=dump/raw/$2
  if [ "${task}" = asr ]; then
    echo "--${p}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound" \
         "--${p}_data_path_and_name_and_type ${dir}/text,text,text --${p}_shape_file ${dir}/speech_shape"
    return
  fi
  echo "--${p}_data_path_and_name_and_type ${dir}/wav.scp,speech,sound" \
       "--${p}_data_path_and_name_and_type ${dir}/text,text,text" \
       "--${p}_data_path_and_name_and_type ${dir}/text.prev,text_prev,text" \
       "--${p}_data_path_and_name_and_type ${dir}/text.ctc,text_ctc,text" \
       "--${p}_shape_file ${dir}/speech_shape"
}

declare -A held_locks=()
hold_lock() {  # <dir> <what for>: only this run works in <dir> until it exits; the lock goes with it, also when killed
  local dir=$1 what=$2 fd
  [ -n "${held_locks[${dir}]:-}" ] && return 0
  mkdir -p "${dir}"
  exec {fd}>"${dir}/.lock"
  if ! flock -n "${fd}"; then
    exec {fd}>&-
    log "ERROR: ${dir} is in use by another run right now (it holds ${dir}/.lock), so this run cannot ${what} it:" \
        "wait for that run or stop it"
    return 1
  fi
  held_locks[${dir}]=${fd}
}

training_record() {  # <exp_dir> <train_set> <dev_set> <config> [extra args...]: made_from's arguments for a training
  # (only files that exist: a training cannot have read one that does not, and the check applies the same rule)
  local dir=$1 train_set=$2 dev_set=$3 config=$4 part set file prev=""; shift 4
  record=(--out "${dir}")
  add_input() { [ -f "$3" ] && record+=("$1" "$2=$3"); return 0; }
  add_input --input config "${config}"
  add_input --input token_list "${token_dir}/tokens.txt"
  [ "${token_type}" = bpe ] && add_input --input bpe_model "${token_dir}/bpe.model"
  for arg in "$@"; do
    [ "${prev}" = --init_param ] && add_input --input init_param "${arg}"
    prev=${arg}
  done
  for part in train valid; do
    set=$([ "${part}" = train ] && echo "${train_set}" || echo "${dev_set}")
    add_input --audio "${part}_wav_scp" "dump/raw/${set}/wav.scp"
    for file in text text.prev text.ctc; do add_input --input "${part}_${file}" "dump/raw/${set}/${file}"; done
  done
  record+=(--setting "task=${task}" --setting "train_args=$*")
}

finished_training() {  # <exp_dir> <train_set> <dev_set> <config> [extra args...]: 0 when <exp_dir> finished training
  # from exactly these inputs (made_from.json); 1 when it never finished; 2, saying why, when it finished from other
  # inputs or its checkpoint changed since: refused, as retraining would replace results a report may already hold
  local dir=$1 why
  [ -f "${dir}/made_from.json" ] || return 1
  training_record "$@"
  why=$(${python} -m espnet_peft.bin.made_from check "${record[@]}" 2>&1 >/dev/null) && return 0
  log "ERROR: ${dir} was trained with other settings (${why#redo "${dir}": }); remove ${dir} to retrain it with these"
  return 2
}

train() {  # <exp_dir> <train_set> <dev_set> <config> [extra args...]: ESPnet training through espnet2.bin.launch
  local dir=$1 train_set=$2 dev_set=$3 config=$4 status=0 outputs=() file checked=$4; shift 4
  [ -f "${config}.new" ] && checked=${config}.new  # the settings this run asks for
  finished_training "${dir}" "${train_set}" "${dev_set}" "${checked}" "$@" || status=$?
  if [ "${status}" -eq 0 ]; then log "skip ${dir}: already trained"; rm -f "${config}.new"; return; fi
  [ "${status}" -eq 2 ] && return 1
  hold_lock "${dir}" train || return 1
  if [ -f "${config}.new" ]; then mv "${config}.new" "${config}"; fi  # only now: the running owner's stays intact
  log "training ${dir} (log: ${dir}/train.log); a killed run resumes from ${dir}/checkpoint.pth"
  # shellcheck disable=SC2046
  ${python} -m espnet_peft.bin.measure --out "${dir}/resources.json" -- \
    ${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${dir##*/}" --log "${dir}/train.log" \
      --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${dir}/.dist_init_" \
      --multiprocessing_distributed true -- \
    ${python} -m espnet_peft.bin.${task}_train --use_preprocessor true $(token_args) --token_list "${token_dir}/tokens.txt" \
      $(s2t_data_args train "${train_set}") $(s2t_data_args valid "${dev_set}") \
      --best_model_criterion "${best_criterion}" --resume true --output_dir "${dir}" --config "${config}" "$@"
  # the record, written last, is what "finished" means: what the model was trained from, and its checkpoints
  for file in "${dir}"/config.yaml "${dir}"/valid.*.pth; do [ -e "${file}" ] && outputs+=(--output "${file##*/}"); done
  training_record "${dir}" "${train_set}" "${dev_set}" "${config}" "$@"
  ${python} -m espnet_peft.bin.made_from mark "${record[@]}" "${outputs[@]}"
}

token_args() {  # the tokenizer options of training: the recipe's BPE model, or Whisper's own tokenizer
  if [ "${token_type}" = bpe ]; then echo "--token_type bpe --bpemodel ${token_dir}/bpe.model"
  else echo "--token_type ${token_type} --bpemodel ${token_type}"; fi
}

decode() {  # <config> <model_file> <decode_root> <set>...: hypotheses in <decode_root>/<set>/text
  if [ "${decoder}" = batch_greedy ]; then batch_decode "$@"; else espnet_decode "$@"; fi
}

batch_decode_args() {  # <config> <model_file> <decode_root> <set>...: one argument line of s2t_batch_inference
  local config=$1 model=$2 root=$3 set sets=""
  shift 3
  for set in "$@"; do sets+=" --set dump/raw/${set} ${root}/${set}"; done
  echo "--s2t_train_config ${config} --s2t_model_file ${model} --batch_size ${decode_batch_size} --device ${decode_device}" \
       "--ctc_weight ${decode_ctc_weight} --word_penalty ${decode_word_penalty} --maxlenratio ${decode_maxlenratio}" \
       "--lang_sym ${lang_token} --task_sym ${task_token}$(window_args)${sets}"
}

window_args() {  # a padded dump is decoded at its window (the decoder checks every input has that length)
  if [ "${pad_to_window}" = true ]; then echo " --window_sec ${speech_length}"; fi
}

batch_decode() {  # every set in one process; a set is redone unless decode_info.json matches model and settings
  local root=$3
  mkdir -p "${root}/logdir"
  log "decoding ${*:4} with $2 -> ${root}/<set>/text"
  # an arguments file, not the command line: run.pl / slurm.pl hand that to a shell, which reads <eng> as redirection
  echo "--num_threads ${nj} $(batch_decode_args "$@")" > "${root}/logdir/args.txt"
  ${decode_cmd} --gpu "${decode_gpus}" "${root}/logdir/decode.log" \
    ${python} -m espnet_peft.bin.run_many espnet_peft.bin.s2t_batch_inference "${root}/logdir/args.txt"
}

made_from_args() {  # <config> <model_file> <set>: what an ESPnet decode of <set> depends on
  echo "--input model=$2 --input config=$1 --input wav_scp=dump/raw/$3/wav.scp --audio audio=dump/raw/$3/wav.scp" \
       "--setting inference=${inference_args// /,}" \
       "--setting prompt=${lang_token}${task_token}"
}

prompt_args() {  # S2T models take the language and task tokens; Whisper's prompt is in its tokenizer
  [ "${task}" = asr ] || echo "--lang_sym ${lang_token} --task_sym ${task_token}"
}

espnet_decode() {  # ESPnet's own Speech2Text: every set in one process per job, split over run.pl jobs
  local config=$1 model=$2 root=$3 set n i todo=()
  shift 3
  for set in "$@"; do
    # a set is redone unless made_from.json matches the model, config, audio list and decoding options
    # shellcheck disable=SC2046
    if ${python} -m espnet_peft.bin.made_from check --out "${root}/${set}" \
        $(made_from_args "${config}" "${model}" "${set}"); then
      log "skip decoding ${root}/${set}: done with this model and settings"
    else
      todo+=("${set}")
    fi
  done
  [ ${#todo[@]} -eq 0 ] && return
  n=${nj}
  for set in "${todo[@]}"; do n=$(min "${n}" "$(wc -l < "dump/raw/${set}/wav.scp")"); done
  mkdir -p "${root}/logdir"
  for i in $(seq "${n}"); do : > "${root}/logdir/args.${i}.txt"; done
  for set in "${todo[@]}"; do
    mkdir -p "${root}/${set}/logdir"
    awk -v n="${n}" -v dir="${root}/${set}/logdir" '{ print > (dir "/keys." ((NR - 1) % n + 1) ".scp") }' \
      "dump/raw/${set}/wav.scp"
    for i in $(seq "${n}"); do
      echo "--ngpu ${decode_gpus} --data_path_and_name_and_type dump/raw/${set}/wav.scp,speech,sound" \
           "--key_file ${root}/${set}/logdir/keys.${i}.scp --${model_arg}_train_config ${config}" \
           "--${model_arg}_model_file ${model} $(prompt_args) --output_dir ${root}/${set}/logdir/output.${i}" \
           "${inference_args}" >> "${root}/logdir/args.${i}.txt"
    done
  done
  log "decoding ${todo[*]} with ${model} -> ${root}/<set>/text"
  ${decode_cmd} --gpu "${decode_gpus}" JOB=1:"${n}" "${root}/logdir/decode.JOB.log" \
    ${python} -m espnet_peft.bin.run_many "espnet_peft.bin.${inference_module}" "${root}/logdir/args.JOB.txt"
  for set in "${todo[@]}"; do
    # asr_inference writes its text without special tokens as "text"; S2T keeps them there
    for i in $(seq "${n}"); do cat "${root}/${set}/logdir/output.${i}/1best_recog/$([ "${task}" = asr ] && echo text ||
                                   echo text_nospecial)"; done \
      | sort > "${root}/${set}/text.tmp"
    mv "${root}/${set}/text.tmp" "${root}/${set}/text"
    # shellcheck disable=SC2046
    ${python} -m espnet_peft.bin.made_from mark --out "${root}/${set}" --output text \
      $(made_from_args "${config}" "${model}" "${set}")
  done
}

# ----- stages ------------------------------------------------------------------------------------------------------
if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 7 ]; then
  experiment_list=$(experiments)   # once, before any stage: a bad --methods / --seeds / --sweep stops the run here
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
  log "Stage 1: data preparation (local/data.sh) -> data/{${all_sets// /,}}"
  # shellcheck disable=SC2086
  local/data.sh ${local_data_opts}
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
  log "Stage 2: validate audio and transcripts -> dump/raw/<set> (dropped.tsv says what was dropped and why)"
  for set in ${test_sets}; do
    ${python} -m espnet_peft.bin.validate_data --src "data/${set}" --dst "dump/raw/${set}" --fs "${fs}" \
      --min_sec 0 --max_sec "${speech_length}"
  done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
  log "Stage 3: validate + length/empty-text filtering of train/dev sets (${min_sec}-${max_sec} s); the text files the model trains on"
  for set in ${train_sets} ${dev_sets}; do
    ${python} -m espnet_peft.bin.validate_data --src "data/${set}" --dst "dump/raw/${set}" --fs "${fs}" \
      --min_sec "${min_sec}" --max_sec "${max_sec}"
  done
  for set in ${all_sets}; do
    if [ "${task}" = asr ]; then  # Whisper writes sentences: its targets do too ("The cat sat." for "the cat sat")
      ${python} -m espnet_peft.bin.make_written_text --data_dir "dump/raw/${set}"
    else
      ${python} -m espnet_peft.bin.make_s2t_text --data_dir "dump/raw/${set}" --lang "${lang_token}" \
        --task "${task_token}" --notime "$([ "${task}" = s2t ] && echo true || echo false)"
    fi
    # ESPnet's batch sampler reads lengths from a shape file (no collect_stats pass needed for utterance_mvn).
    cp "dump/raw/${set}/utt2num_samples" "dump/raw/${set}/speech_shape"
  done
  if [ "${pad_to_window}" = true ]; then
    log "Stage 3: zero-pad every utterance to the ${speech_length} s window (dump/raw/<set>/window/)"
    # shellcheck disable=SC2046
    ${python} -m espnet_peft.bin.pad_to_window --seconds "${speech_length}" --fs "${fs}" \
      $(for set in ${all_sets}; do echo "dump/raw/${set}"; done)
  fi
fi

fetch_source() {  # the source model and its tokens; refuses a changed package or a token list of another BPE run
  ${python} -m espnet_peft.bin.fetch_source_model --source "${source_model}" --out "${source_dir}" \
    --token_dir "${token_dir}" --lang_token "${lang_token}" --task_token "${task_token}" --task "${task}" \
    ${source_sha256:+--sha256 "${source_sha256}"}
}
use_source_model=$([ -n "${source_model}" ] && [ "${retrain_source}" = false ] && echo true || echo false)

whisper_source() {  # the Whisper source model (ESPnet's own classes) and its token list, from source_config
  ${python} -m espnet_peft.bin.whisper_source_model --config "${source_config}" --out "${source_dir}" \
    --token_dir "${token_dir}"
}

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
  if [ "${task}" = asr ]; then
    log "Stage 4: Whisper's token list, and its model from ${source_config} (ESPNET_PEFT_WHISPER_DIR=${ESPNET_PEFT_WHISPER_DIR:-})"
    whisper_source
  elif [ "${use_source_model}" = true ]; then
    log "Stage 4: the BPE model and token list of ${source_model}"
    fetch_source
  elif [ -f "${token_dir}/tokens.txt" ]; then
    log "Stage 4: skip, ${token_dir} exists"
  else
    log "Stage 4: train an OWSM-style BPE (${bpe_vocab_size} pieces + special tokens) on ${source_train_set}"
    languages=(--lang "${lang_token}")
    if [ "${task}" = s2t_ctc ]; then languages+=(--lang "<nolang>"); fi  # OWSM-CTC's preprocessor looks it up
    ${python} -m espnet_peft.bin.train_owsm_bpe --text "dump/raw/${source_train_set}/text.ctc" --out "${token_dir}" \
      --vocab_size "${bpe_vocab_size}" --speech_length "${speech_length}" "${languages[@]}" --task "${task_token}"
  fi
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
  if [ "${task}" = asr ]; then
    log "Stage 5: source model: Whisper, as ESPnet builds it from ${source_config} (no pretraining here)"
    whisper_source
  elif [ "${use_source_model}" = true ]; then
    log "Stage 5: source model from ${source_model}"
    if [ -f "${source_dir}/made_from.json" ]; then
      log "ERROR: ${source_dir} holds a source model trained here (--retrain_source true); move it away" \
          "(mv ${source_dir} ${source_dir}.trained) to use ${source_model}, or keep --retrain_source true"
      exit 1
    fi
    fetch_source
  else
    if [ -f "${source_dir}/source.json" ]; then
      log "ERROR: ${source_dir} holds the fetched model $(grep -m1 '"source"' "${source_dir}/source.json");" \
          "move it away (mv ${source_dir} ${source_dir}.fetched) to retrain the source model here"
      exit 1
    fi
    log "Stage 5: pretrain the embedded source model on ${source_train_set} (cached in ${source_dir})"
    stats_args=()
    if grep -q "^normalize: *global_mvn" "${source_config}"; then
      # Statistics of the unpadded speech: ESPnet's collect_stats would see the S2T window's zero padding too.
      [ -f "${source_dir}/feats_stats.npz" ] || ${python} -m espnet_peft.bin.speech_stats --config "${source_config}" \
        --wav_scp "dump/raw/${source_train_set}/wav.scp" --out "${source_dir}/feats_stats.npz"
      stats_args=(--normalize_conf "stats_file=${source_dir}/feats_stats.npz")
    fi
    train "${source_dir}" "${source_train_set}" "${source_dev_set}" "${source_config}" "${stats_args[@]}"
    # ESPnet writes valid.<metric>.ave.pth (the average of the keep_nbest_models best epochs) when training ends
    model_file="valid.${best_name}.ave.pth"
    if [ -n "${source_continue_config}" ]; then
      continued=${source_dir}/continued
      log "Stage 5: train on from ${source_dir}/${model_file} with ${source_continue_config} (in ${continued})"
      mkdir -p "${continued}"
      # config.yaml of the first part with the continuation's keys; fine-tuning keeps using the first part's
      # config.yaml, so a retrained and a fetched (packed) source model give the same fine-tuning configs
      ${python} -m espnet_peft.bin.make_finetune_config --base "${source_dir}/config.yaml" \
        --overrides "${source_continue_config}" --method full --out "${continued}/train.yaml.new"
      train "${continued}" "${source_train_set}" "${source_dev_set}" "${continued}/train.yaml" \
        --init_param "${source_dir}/${model_file}"
      model_file="continued/${model_file}"
    fi
    ln -sfn "${model_file}" "${source_dir}/model.pth"
  fi
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
  log "Stage 6: zero-shot decoding of the source model on ${test_sets}"
  hold_lock "${source_dir}" decode || exit 1
  # shellcheck disable=SC2086
  decode "${source_dir}/config.yaml" "${source_dir}/model.pth" "${source_dir}/decode_zeroshot" ${test_sets}
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
  log "Stage 7: fine-tuning (${methods:-every adapter, full}) at a budget of ${budget} trainable parameters," \
      "seeds ${seeds}${sweep:+, sweep ${sweep}}"
  pids=() names=() failed=() ready=()
  # every config first (a python start-up each), so that the trainings below are submitted together
  while read -r -u 3 domain method seed name settings _; do
    dir="exp/${name}"
    mkdir -p "${dir}"
    # shellcheck disable=SC2046
    ${python} -m espnet_peft.bin.make_finetune_config --base "${source_dir}/config.yaml" \
      --overrides "$([ "${method}" = full ] && echo "${full_finetune_config}" || echo "${finetune_config}")" \
      --method "${method}" --peft_conf_dir "${peft_conf_dir}" --budget "${budget}" --seed "${seed}" \
      $(set_opts "${settings}") --out "${dir}/train.yaml.new"
    # a finished run trained with other settings is refused before any training starts
    status=0
    finished_training "${dir}" "${domain}_train" "${domain}_dev" "${dir}/train.yaml.new" \
      --init_param "${source_dir}/model.pth" || status=$?
    if [ "${status}" -eq 2 ]; then failed+=("${dir}"); continue; fi
    # finished from these very inputs: not handed to train(), which would hash its audio a second time
    if [ "${status}" -eq 0 ]; then log "skip ${dir}: already trained"; rm -f "${dir}/train.yaml.new"; continue; fi
    ready+=("${domain} ${dir}")
  done 3<<< "${experiment_list}"
  for entry in "${ready[@]}"; do
    read -r domain dir <<< "${entry}"
    # up to train_jobs trainings at once (each one its own process or scheduler job, log and resume point)
    while [ "$(jobs -rp | wc -l)" -ge "${train_jobs}" ]; do sleep 2; done
    train "${dir}" "${domain}_train" "${domain}_dev" "${dir}/train.yaml" --init_param "${source_dir}/model.pth" &
    pids+=($!)
    names+=("${dir}")
  done
  for i in "${!pids[@]}"; do wait "${pids[${i}]}" || failed+=("${names[${i}]}"); done
  if [ ${#failed[@]} -gt 0 ]; then
    log "ERROR: fine-tuning failed for ${failed[*]}: see the messages above and their train.log; re-running stage 7" \
        "resumes an interrupted run"
    exit 1
  fi
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
  log "Stage 8: decoding every fine-tuned model on its target test set and on ${source_test_sets}"
  unfinished=()
  while read -r -u 3 _ _ _ name _; do
    [ -f "exp/${name}/made_from.json" ] || unfinished+=("exp/${name}")
  done 3<<< "${experiment_list}"
  if [ ${#unfinished[@]} -gt 0 ]; then
    log "ERROR: training has not finished for ${unfinished[*]}: run stage 7 first (./run.sh --stage 7), so that" \
        "no decode comes from an intermediate checkpoint"
    exit 1
  fi
  while read -r -u 3 _ _ _ name _; do
    hold_lock "exp/${name}" decode || exit 1  # not while another run trains or decodes it
  done 3<<< "${experiment_list}"
  if [ "${decoder}" = batch_greedy ]; then
    # every experiment in one process per job (ESPnet's S2T import costs 10-16 s a process), jobs split the list
    mkdir -p exp/decode_logdir
    for i in $(seq "${nj}"); do : > "exp/decode_logdir/args.${i}.txt"; done
    i=0
    while read -r -u 3 domain _ _ name _; do
      # shellcheck disable=SC2086
      batch_decode_args "exp/${name}/config.yaml" "exp/${name}/${best_checkpoint}" "exp/${name}/decode" \
        "${domain}_test" ${source_test_sets} >> "exp/decode_logdir/args.$((i % nj + 1)).txt"
      i=$((i + 1))
    done 3<<< "${experiment_list}"
    ${decode_cmd} --gpu "${decode_gpus}" JOB=1:"${nj}" exp/decode_logdir/decode.JOB.log \
      ${python} -m espnet_peft.bin.run_many espnet_peft.bin.s2t_batch_inference exp/decode_logdir/args.JOB.txt
  else
    while read -r -u 3 domain _ _ name _; do
      # shellcheck disable=SC2086
      decode "exp/${name}/config.yaml" "exp/${name}/${best_checkpoint}" "exp/${name}/decode" "${domain}_test" \
        ${source_test_sets}
    done 3<<< "${experiment_list}"
  fi
fi

if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
  log "Stage 9: scoring with sclite (cross-checked against jiwer) -> <decode_dir>/<set>/score_{wer,cer}"
  for text in exp/source/decode_zeroshot/*/text exp/*/decode/*/text; do
    [ -f "${text}" ] || continue
    set=$(basename "$(dirname "${text}")")
    ${python} -m espnet_peft.bin.score --ref "dump/raw/${set}/${ref_text}" --hyp "${text}" \
      --utt2spk "dump/raw/${set}/utt2spk" --out "$(dirname "${text}")" --normalizer "${score_normalizer}"
  done
  # run_info.json per experiment (and the zero-shot model per domain): what the report compares.
  device=$([ "${ngpu}" -gt 0 ] && echo "${ngpu} GPU(s)" || echo "cpu ($(nproc --all) cores); peak memory = max RSS")
  other_sources() {  # <decode dir>: the source test sets after the first, as --other_source options
    local set
    for set in ${source_test_sets#"${first_source_test}"}; do echo "--other_source $1/${set}"; done
  }
  for domain in ${target_domains}; do
    decoded=${source_dir}/decode_zeroshot
    # shellcheck disable=SC2046
    ${python} -m espnet_peft.bin.write_run_info --exp_dir "${source_dir}/zero_shot_${domain}" --domain "${domain}" \
      --method zero_shot --target "${decoded}/${domain}_test" --source "${decoded}/${first_source_test}" \
      $(other_sources "${decoded}")
  done
  while read -r -u 3 domain method seed name settings label; do
    # shellcheck disable=SC2046
    ${python} -m espnet_peft.bin.write_run_info --exp_dir "exp/${name}" --domain "${domain}" --method "${method}" \
      --seed "${seed}" $(set_opts "${settings}") --label "${label}" --target "exp/${name}/decode/${domain}_test" \
      --source "exp/${name}/decode/${first_source_test}" $(other_sources "exp/${name}/decode") --device "${device}"
  done 3<<< "${experiment_list}"
fi

if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
  log "Stage 10: learning-vs-forgetting figures (and one per swept method and field) -> exp/report/*.png"
  ${python} -m espnet_peft.bin.make_report --exp_root exp --out exp/report --figures_only
fi

if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
  log "Stage 11: merge each adapter into a plain ESPnet model and export it as an adapter package"
  adapted=()
  while read -r -u 3 _ method _ name _; do
    [ "${method}" = full ] || adapted+=("exp/${name}")
  done 3<<< "${experiment_list}"
  [ ${#adapted[@]} -eq 0 ] || ${python} -m espnet_peft.bin.package_experiments --task "${task}" \
    --model_name "${best_checkpoint}" "${adapted[@]}"
fi

if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
  log "Stage 12: report -> RESULTS.md, exp/report/results.json"
  ${python} -m espnet_peft.bin.make_report --exp_root exp --out exp/report
  cp exp/report/RESULTS.md RESULTS.md
  log "Done: see RESULTS.md and exp/report/"
fi

if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ] && [ "${task}" = s2t_ctc ]; then
  log "Stage 13: skipped: the analyses take OWSM encoder-decoder models; an OWSM-CTC encoder needs its text prompt"
elif [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ] && [ "${task}" = asr ] && [ -z "${analyses}" ]; then
  log "Stage 13: skipped (--analyses \"\")"
elif [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ]; then
  log "Stage 13: every fine-tuned model vs the source model on ${first_source_test} (${analyses})" \
      "-> exp/analysis/<domain>/<method>[_<field><value>]_s<seed>/ (first seed; later seeds: ${seed_analyses:-none});" \
      "RESULTS.md re-rendered with an Analysis section"
  mkdir -p exp/analysis/logdir
  : > exp/analysis/logdir/args.txt
  read -r first_seed _ <<< "${seeds}"
  todo=()
  while read -r -u 3 domain _ seed name _; do
    # the first seed's model of each report row gets every analysis; later seeds get --seed_analyses, if any
    run_analyses=${analyses}
    if [ "${seed}" != "${first_seed}" ]; then
      [ -n "${seed_analyses}" ] || continue
      run_analyses=${seed_analyses}
    fi
    out="exp/analysis/${domain}/${name#"${domain}_"}"
    # the checkpoints stages 6 and 8 decode; redone unless made_from.json matches models, audio and settings
    made_from="--out ${out} --input model_a=${source_dir}/model.pth --input config_a=${source_dir}/config.yaml"
    made_from+=" --input model_b=exp/${name}/${best_checkpoint} --input config_b=exp/${name}/config.yaml"
    made_from+=" --audio wav_scp=dump/raw/${first_source_test}/wav.scp --setting analyses=${run_analyses// /,}"
    made_from+=" --setting max_utts=${analysis_max_utts} --setting device=${analysis_device}"
    # shellcheck disable=SC2086
    if ${python} -m espnet_peft.bin.made_from check ${made_from}; then log "skip ${out}: done"; continue; fi
    todo+=("${made_from}")
    echo "--model_a_config ${source_dir}/config.yaml --model_a_file ${source_dir}/model.pth" \
         "--model_b_config exp/${name}/config.yaml --model_b_file exp/${name}/${best_checkpoint}" \
         "--data dump/raw/${first_source_test} --max_utts ${analysis_max_utts} --analyses ${run_analyses}" \
         "--device ${analysis_device} --out ${out}" >> exp/analysis/logdir/args.txt
  done 3<<< "${experiment_list}"
  # per domain, every first-seed model against every other and the source (analyze --models), in the same job
  for domain in ${target_domains}; do
    out="exp/analysis/${domain}/models"
    entries="source=${source_dir}/model.pth"
    made_from="--out ${out} --input source=${source_dir}/model.pth --audio wav_scp=dump/raw/${first_source_test}/wav.scp"
    made_from+=" --setting max_utts=${analysis_max_utts} --setting device=${analysis_device}"
    while read -r -u 3 d _ seed name _; do
      if [ "${d}" != "${domain}" ] || [ "${seed}" != "${first_seed}" ]; then continue; fi
      entries+=" ${name#"${domain}_"}=exp/${name}/${best_checkpoint}"
      made_from+=" --input ${name}=exp/${name}/${best_checkpoint}"
    done 3<<< "${experiment_list}"
    # shellcheck disable=SC2086
    if ${python} -m espnet_peft.bin.made_from check ${made_from}; then log "skip ${out}: done"; continue; fi
    todo+=("${made_from}")
    echo "--models ${entries} --data dump/raw/${first_source_test} --max_utts ${analysis_max_utts}" \
         "--device ${analysis_device} --out ${out}" >> exp/analysis/logdir/args.txt
  done
  if [ -s exp/analysis/logdir/args.txt ]; then
    # one process for every model: ESPnet's S2T import alone costs 10-16 s
    ${decode_cmd} --gpu "${analysis_gpus}" exp/analysis/logdir/analyze.log \
      ${python} -m espnet_peft.bin.run_many espnet_peft.bin.analyze exp/analysis/logdir/args.txt
    # shellcheck disable=SC2086
    for made_from in "${todo[@]}"; do ${python} -m espnet_peft.bin.made_from mark ${made_from}; done
  fi
  # the report finds exp/analysis by itself (stage 12 re-run later keeps the section)
  ${python} -m espnet_peft.bin.make_report --exp_root exp --out exp/report
  cp exp/report/RESULTS.md RESULTS.md
  log "Done: see the Analysis section of RESULTS.md, and exp/analysis/<domain>/<method>/summary.md"
fi
