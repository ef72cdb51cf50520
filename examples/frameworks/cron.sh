#!/usr/bin/env bash
# A cron-style batch framework for cairn, in shell: every INTERVAL seconds it takes one resource
# offer from offerd that is big enough for the job, launches the job there, declines the other
# offers for the rest of the interval, and reports how the job ended. It is the proof that a
# scheduler can be swapped in like the other glue pieces: it only needs curl and jq.
#
#   CAIRN_OFFERD  offerd's address [http://127.0.0.1:5050]
#   FRAMEWORK     framework name   [cron]
#   JOB           shell command run as the task [date]
#   NAME          task name (lowercase, digits, -) [job]
#   CPUS / MEM    resources of one run [0.1 / 32]
#   INTERVAL      seconds between runs [60]
#   RUNS          stop after this many runs (0 = forever) [0]
#
# Output: one line per run, `run N: <task id> on <node>: <final state> <message>`; exit 0, or 1
# when offerd cannot be reached or refuses a request.
set -euo pipefail

OFFERD=${CAIRN_OFFERD:-http://127.0.0.1:5050}
FRAMEWORK=${FRAMEWORK:-cron}
JOB=${JOB:-date}
NAME=${NAME:-job}
CPUS=${CPUS:-0.1}
MEM=${MEM:-32}
INTERVAL=${INTERVAL:-60}
RUNS=${RUNS:-0}

command -v curl >/dev/null || { echo "cron.sh: curl is needed" >&2; exit 1; }
command -v jq >/dev/null || { echo "cron.sh: jq is needed" >&2; exit 1; }

api() { # METHOD PATH [JSON]
    local out args=(-sS -X "$1" -H 'Content-Type: application/json' -w '\n%{http_code}')
    (($# > 2)) && args+=(-d "$3")
    if ! out=$(curl "${args[@]}" "$OFFERD$2"); then
        echo "cron.sh: cannot reach offerd at $OFFERD" >&2
        exit 1
    fi
    local code=${out##*$'\n'}
    local body=${out%$'\n'*}
    if [[ $code != 2* ]]; then
        echo "cron.sh: $1 $2 -> $code $body" >&2
        return 1
    fi
    printf '%s' "$body"
}

run=0
while ((RUNS == 0 || run < RUNS)); do
    started=$(date +%s)
    run=$((run + 1))
    # Offers for this framework, waiting up to the interval for one to appear.
    offers=$(api GET "/v1/offers?framework=$FRAMEWORK&wait=${INTERVAL}s")
    pick=$(jq -r --argjson c "$CPUS" --argjson m "$MEM" \
        '[.offers[] | select(.resources.cpus >= $c and .resources.mem >= $m)] | first | .id // empty' <<<"$offers")
    # Everything not used is declined until the next run is due.
    for other in $(jq -r --arg p "$pick" '.offers[] | select(.id != $p) | .id' <<<"$offers"); do
        api POST "/v1/offers/$other/decline?framework=$FRAMEWORK" "{\"refuse_seconds\": $INTERVAL}" >/dev/null || true
    done
    if [[ -z $pick ]]; then
        echo "run $run: no offer with cpus $CPUS and mem $MEM; skipped"
    else
        task=$(jq -n --arg n "$NAME" --arg cmd "$JOB" --argjson c "$CPUS" --argjson m "$MEM" \
            '{tasks: [{name: $n, cmd: $cmd, cpus: $c, mem: $m}]}')
        launched=$(api POST "/v1/offers/$pick/accept?framework=$FRAMEWORK" "$task")
        id=$(jq -r '.tasks[0].id' <<<"$launched")
        node=$(jq -r '.tasks[0].slaveId' <<<"$launched")
        # Follow the task until it ends (offerd keeps ended tasks readable for a while).
        while :; do
            state=$(api GET "/v1/tasks/$id")
            case $(jq -r .state <<<"$state") in
            TASK_FINISHED | TASK_FAILED | TASK_KILLED | TASK_LOST | TASK_ERROR) break ;;
            esac
            sleep 0.2
        done
        echo "run $run: $id on $node: $(jq -r '.state + " " + .message' <<<"$state")"
    fi
    ((RUNS != 0 && run >= RUNS)) && break
    now=$(date +%s)
    sleep $((started + INTERVAL > now ? started + INTERVAL - now : 0))
done
