#!/usr/bin/env bash
# Run polyp-kd-tune sweeps on the Ray cluster described by cluster.yaml.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: ./launch.sh [--dry-run] [--cluster FILE] [--storage URI] COMMAND [ARGS]

commands:
  up                          start (or update) the cluster: ray up; writes the cluster's Ray token to
                              .ray_auth_token first (owner-only, git-ignored) when there is none
  data [DIR]                  copy the dataset (default ./dataset) to every running node
                              (new nodes get ./dataset from cluster.yaml's file_mounts)
  sweep --space FILE [ARGS]   submit `python -m tune.search --space FILE ARGS` as a Ray job; a teacher
                              checkpoint on this machine (the space's teacher.checkpoint, or --teacher)
                              is uploaded to the storage first and the job reads it from there
  status                      cluster nodes and running jobs
  logs [JOB_ID]               follow a sweep's output (default: the last submitted job)
  fetch SWEEP [DEST]          copy results/SWEEP back from the storage (default dest ./results/SWEEP)
  down                        tear the cluster down

options:
  --dry-run        print the commands instead of running them
  --cluster FILE   cluster config (default: cluster.yaml)
  --storage URI    shared storage for results and checkpoints (default: $POLYP_KD_STORAGE,
                   e.g. s3://my-bucket/polyp-kd-tune); multi-node sweeps need one
USAGE
}

DRY_RUN=0
CLUSTER=cluster.yaml
# This checkout's venv (README: the two commands) when there is one: it has tune/ and pyarrow.
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
STORAGE="${POLYP_KD_STORAGE:-}"
DASHBOARD=http://127.0.0.1:8265
REMOTE_DATA='~/polyp-kd-data'
LAST_JOB_FILE=.launch_last_job
TOKEN_FILE=.ray_auth_token
NAME_RULE='^[A-Za-z0-9][A-Za-z0-9._-]*$'

die() { echo "error: $*" >&2; exit 2; }
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}
need_cluster_file() { [[ -f $CLUSTER ]] || die "$CLUSTER: cluster config not found; pass --cluster FILE"; }
need_storage() {
  [[ -n $STORAGE ]] || die "no shared storage: pass --storage s3://bucket/path or set POLYP_KD_STORAGE"
}
need_token() {
  [[ -s $TOKEN_FILE ]] || die "$TOKEN_FILE: no Ray token here; ./launch.sh up writes it (the cluster needs the same one)"
}
# A value that goes into a remote shell or a local path: letters, digits, '.', '_', '-' only.
need_name() { [[ $2 =~ $NAME_RULE ]] || die "$1 '$2': use letters, digits, '.', '_' or '-' (starting with a letter or digit)"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --cluster) [[ $# -ge 2 ]] || die "--cluster needs a file"; CLUSTER=$2; shift 2 ;;
    --storage) [[ $# -ge 2 ]] || die "--storage needs a URI"; STORAGE=$2; shift 2 ;;
    -*) die "unknown option $1; see ./launch.sh --help" ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
command=$1; shift

case $command in
  up)
    need_cluster_file
    if [[ ! -s $TOKEN_FILE ]]; then
      if [[ $DRY_RUN == 1 ]]; then
        echo "# would write a new Ray token to $TOKEN_FILE (owner-only)"
      else
        (umask 077 && "$PYTHON" -c "import secrets; print(secrets.token_hex(32))" > "$TOKEN_FILE")
      fi
    fi
    run ray up -y "$CLUSTER"
    ;;
  data)
    need_cluster_file
    src=${1:-dataset}
    [[ -d $src/TrainDataset ]] || die "$src: no TrainDataset folder; pass the data root (PraNet layout)"
    run ray rsync-up --all-nodes "$CLUSTER" "$src/" "$REMOTE_DATA/"
    ;;
  sweep)
    need_cluster_file
    need_storage
    [[ $DRY_RUN == 1 ]] || need_token
    space=""
    teacher=()
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
      [[ ${args[i]} == --space ]] && space=${args[i + 1]:-}
      [[ ${args[i]} == --teacher ]] && teacher=(--teacher "${args[i + 1]:-}")
    done
    [[ -n $space ]] || die "sweep needs --space FILE (e.g. kd.yaml)"
    [[ -f $space || -f search_spaces/$space || -f search_spaces/$space.yaml ]] \
      || die "$space: search-space file not found (looked in . and search_spaces/)"
    # The job does not carry results/: a teacher trained on this machine goes to the storage (named by its
    # content), and the sweep reads it from there (also in a dry run, this step reads, it uploads nothing).
    upload=$("$PYTHON" -m tune.cluster.teacher_upload --space "$space" --storage "$STORAGE" "${teacher[@]}")
    if [[ -n $upload ]]; then
      run "$PYTHON" -m tune.cluster.storage upload "${upload%%$'\t'*}" "${upload#*$'\t'}"
      args+=(--teacher "${upload#*$'\t'}")
    fi
    # The dashboard port of the head, forwarded to this machine for the job API, which wants the token.
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$PWD/$TOKEN_FILE"
    run ray dashboard "$CLUSTER" --port-forward 8265 &
    forward=$!
    trap 'kill $forward 2>/dev/null || true' EXIT
    [[ $DRY_RUN == 1 ]] || sleep 5
    job_id="polyp-kd-$(date +%Y%m%d-%H%M%S)"
    run ray job submit --address "$DASHBOARD" --submission-id "$job_id" --no-wait \
      --working-dir . \
      --runtime-env-json '{"excludes": [".venv", "results", "dataset", ".git", ".ray_auth_token", ".env", "wandb"]}' \
      -- python -m tune.search --address auto --storage "$STORAGE" --set data_root="$REMOTE_DATA" "${args[@]}"
    [[ $DRY_RUN == 1 ]] || echo "$job_id" > "$LAST_JOB_FILE"
    echo "submitted $job_id; follow it with ./launch.sh logs $job_id"
    ;;
  status)
    need_cluster_file
    run ray exec "$CLUSTER" "export RAY_AUTH_MODE=token; ray status && ray job list --address http://127.0.0.1:8265"
    ;;
  logs)
    need_cluster_file
    job_id=${1:-$( [[ -f $LAST_JOB_FILE ]] && cat "$LAST_JOB_FILE" || true)}
    [[ -n $job_id ]] || die "no job id given and none submitted from here; see ./launch.sh status"
    need_name "job id" "$job_id"
    run ray exec "$CLUSTER" "RAY_AUTH_MODE=token ray job logs --follow --address http://127.0.0.1:8265 $job_id"
    ;;
  fetch)
    need_storage
    [[ $# -ge 1 ]] || die "fetch needs a sweep name, e.g. ./launch.sh fetch kd"
    sweep=$1
    need_name "sweep" "$sweep"
    dest=${2:-results/$sweep}
    case $STORAGE in
      s3://*) run aws s3 sync "${STORAGE%/}/$sweep" "$dest" ;;
      gs://*) run gsutil -m rsync -r "${STORAGE%/}/$sweep" "$dest" ;;
      *) run rsync -a "${STORAGE%/}/$sweep/" "$dest/" ;;
    esac
    echo "W&B offline runs: wandb sync $dest/wandb/offline-run-*"
    ;;
  down)
    need_cluster_file
    run ray down -y "$CLUSTER"
    ;;
  *)
    die "unknown command '$command'; see ./launch.sh --help"
    ;;
esac
