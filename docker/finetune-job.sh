#!/usr/bin/env bash
# Entry point of the PyTorchJob in k8s/training (installed in the image as medseg-finetune-job).
#
#   medseg-finetune-job pull  <medseg pull arguments: --target PATH --out DIR [--remote NAME]>
#   medseg-finetune-job train torchrun [torchrun options] -m medseg.cli finetune ... --out "$MEDSEG_JOB_OUT" ...
#
# pull (the init containers): the master replica pulls the pinned input with `medseg pull` into the job's
# workspace on the shared volume, once per image revision (a marker beside it records the revision);
# the other replicas wait until that marker is there, so that every process reads the same files.
#
# train (the main container): runs the given torchrun command, unless $MEDSEG_JOB_OUT already holds the
# finished model (a re-created pod, e.g. after a failed push). Then, on the master replica only, records
# $MEDSEG_JOB_OUT with DVC in the scratch project $MEDSEG_JOB_PROJECT (dvc init --no-scm, the remotes of
# /app/.dvc/config), pushes it to the remote $DVC_REMOTE and prints the .dvc pointer to commit.
#
# Exit status: that of the failing step. A SIGTERM (eviction, preemption, node drain) ends with 143,
# which the job's `restartPolicy: ExitCode` retries; the restarted pod resumes training from the last
# epoch (`finetune --resume`, state in finetune.work_dir on the volume).
#
# Environment: REPLICA_TYPE (the pod's training.kubeflow.org/replica-type label; empty = master),
# DVC_REMOTE (remote name; empty = the project's default remote), MEDSEG_JOB_OUT, MEDSEG_JOB_PROJECT,
# JOB_NAME, MEDSEG_PULL_TIMEOUT_S (how long other replicas wait for the master's pull; default 7200).
set -euo pipefail

readonly APP_DIR=${MEDSEG_PROJECT_DIR:-/app}

log() { printf 'medseg-finetune-job: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

is_master() {
    local replica=${REPLICA_TYPE:-master}
    [[ ${replica,,} == master ]]
}

# The value of option $1 in the remaining arguments ("--out DIR" or "--out=DIR").
option_value() {
    local name=$1 previous=""
    shift
    for argument in "$@"; do
        if [[ $previous == "$name" ]]; then printf '%s' "$argument"; return 0; fi
        if [[ $argument == "$name="* ]]; then printf '%s' "${argument#*=}"; return 0; fi
        previous=$argument
    done
    return 1
}

revision() { printf '%s' "${MEDSEG_GIT_SHA:-unknown}"; }

pull() {
    local out marker waited=0 timeout=${MEDSEG_PULL_TIMEOUT_S:-7200}
    out=$(option_value --out "$@") || die "pull: --out is missing"
    marker="${out%/}.pulled"
    if [[ -f $marker && $(cat "$marker") == "$(revision)" ]]; then
        log "pull: $out already holds the input of revision $(revision)"
        return 0
    fi
    if ! is_master; then
        log "pull: waiting for the master replica to pull $out"
        until [[ -f $marker && $(cat "$marker") == "$(revision)" ]]; do
            (( waited < timeout )) || die "pull: $marker did not appear within ${timeout}s"
            sleep 10
            waited=$((waited + 10))
        done
        return 0
    fi
    rm -rf -- "$out" "$marker"
    mkdir -p -- "$(dirname -- "$out")"
    local remote=()
    if [[ -n ${DVC_REMOTE:-} ]] && ! option_value --remote "$@" >/dev/null; then remote=(--remote "$DVC_REMOTE"); fi
    medseg pull "$@" "${remote[@]}"
    revision >"$marker"
}

# Runs "$@" as a child, forwarding SIGTERM/SIGINT; returns its status, or 143 after a SIGTERM.
terminated=0
run_child() {
    "$@" &
    local child=$! status=0
    trap 'terminated=1; kill -TERM "$child" 2>/dev/null || true' TERM INT
    wait "$child" || status=$?
    while kill -0 "$child" 2>/dev/null; do  # wait returned early because of the trap
        status=0
        wait "$child" || status=$?
    done
    trap - TERM INT
    if (( terminated )); then return 143; fi
    return "$status"
}

push() {
    local project=${MEDSEG_JOB_PROJECT:?} out=${MEDSEG_JOB_OUT:?} relative
    case $out in
        "$project"/*) relative=${out#"$project"/} ;;
        *) die "push: MEDSEG_JOB_OUT ($out) is not inside MEDSEG_JOB_PROJECT ($project)" ;;
    esac
    cd "$project"
    if [[ ! -d .dvc ]]; then
        dvc init --no-scm --quiet
    fi
    # The project's remotes (URLs and options; credentials come from the environment), without its
    # cache settings, and without git.
    python - "$APP_DIR/.dvc/config" .dvc/config <<'PY'
import sys

from configobj import ConfigObj

config = ConfigObj(sys.argv[1])
config.pop("cache", None)
config.setdefault("core", {})["no_scm"] = "true"
config.filename = sys.argv[2]
config.write()
PY
    local remote=()
    if [[ -n ${DVC_REMOTE:-} ]]; then remote=(--remote "$DVC_REMOTE"); fi
    dvc add --quiet "$relative"
    dvc push "${remote[@]}" "$relative.dvc"
    log "pushed $out; commit this pointer as $relative.dvc in your checkout, then \`dvc pull $relative.dvc\`:"
    printf -- '--- %s.dvc\n' "$relative"
    cat "$relative.dvc"
}

train() {
    (( $# > 0 )) || die "train: no command given"
    [[ $1 == torchrun ]] || die "train: expected a torchrun command, got: $1"
    local out=${MEDSEG_JOB_OUT:?}
    if [[ -f $out/model.pt && -f $out/train_summary.json ]]; then
        log "train: $out already holds a finished model; not training again"
    else
        mkdir -p -- "$(dirname -- "$out")"
        run_child "$@" || exit $?
    fi
    if is_master; then
        push
    fi
}

if [[ -v JOB_NAME && -z $JOB_NAME ]]; then
    die "JOB_NAME is empty: the pod has no training.kubeflow.org/job-name label (Training Operator >= 1.7 sets it)"
fi

case ${1:-} in
    pull) shift; pull "$@" ;;
    train) shift; train "$@" ;;
    *) die "usage: medseg-finetune-job pull <medseg pull arguments> | train torchrun ... (got: ${1:-nothing})" ;;
esac
