#!/usr/bin/env bash
# Job launchers of the recipes; sourced by run.sh (from the recipe directory).
#
#   <cmd> [--gpu N] [--mem X] [--num_threads N] [--max_jobs_run N] [JOB=1:N] <log> <command...>
#
# e.g. ${decode_cmd} --max_jobs_run 4 JOB=1:8 exp/decode/log/decode.JOB.log python -m ... --part JOB
#
# cmd_backend=local: utils/run.pl runs the jobs on this machine (--gpu/--mem are ignored,
#                    at most --max_jobs_run at a time, default: the number of CPUs).
# cmd_backend=slurm: utils/slurm.pl submits them with sbatch (a JOB=1:N range as one job array)
#                    and waits; conf/slurm.conf maps --gpu/--mem/--num_threads/--num_nodes/--time
#                    to sbatch flags (edit it for your cluster's partitions).
# Select one with e.g. `cmd_backend=slurm ./run.sh` (default: local).
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        # data preparation, statistics, training
        export train_cmd="utils/run.pl"
        # training on GPUs ("--gpu N" is added by the recipe / espnet2.bin.launch)
        export cuda_cmd="utils/run.pl"
        # decoding and scoring
        export decode_cmd="utils/run.pl"
        ;;
    slurm)
        export train_cmd="utils/slurm.pl --config conf/slurm.conf"
        export cuda_cmd="utils/slurm.pl --config conf/slurm.conf"
        export decode_cmd="utils/slurm.pl --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (expected: local or slurm)" >&2
        # shellcheck disable=SC2317  # exit: only reached when executed rather than sourced
        return 1 2>/dev/null || exit 1
        ;;
esac
