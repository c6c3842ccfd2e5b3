# Sourced by run_gpu_checks.sh and run_cpu_checks.sh. A lent GPU machine gives a command
# 10 minutes and a session 15, start included: every stage runs under `timeout`, at most
# its own cap and never past BUDGET seconds from the start, so the script always gets to
# its summary with the logs written so far. The stages come in the order of their value.
BUDGET=${BUDGET:-540}
budget_started=$(date +%s)

# stage LOG CAP COMMAND...: COMMAND's output appended to LOG, for at most CAP seconds (fewer
# when the budget runs low, leaving RESERVE seconds for the summary; skipped when that leaves
# under MIN_STAGE, 10 s), then a line with its exit code (124: stopped by the time limit).
stage() {
  local log=$1 cap=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - budget_started) - ${RESERVE:-15} ))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt "${MIN_STAGE:-10}" ]; then
    echo "skipped: BUDGET=$BUDGET s was spent" >> "$log"
    return
  fi
  timeout "$cap" "$@" >> "$log" 2>&1
  echo "exit code $? (limit ${cap} s)" >> "$log"
}
