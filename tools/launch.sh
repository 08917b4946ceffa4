#!/usr/bin/env bash
# Launches N copies of a command on this machine as one data-parallel run, setting the variables torchrun sets
# (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) for each copy:
#
#   tools/launch.sh --nproc N [--master-port P] [--master-addr A] -- COMMAND [ARGS...]
#
# MASTER_ADDR defaults to 127.0.0.1 and MASTER_PORT to a free port. SIGINT and SIGTERM are passed on to every
# rank. When a rank fails, the others are stopped (SIGTERM, then SIGKILL after 10 s) and launch.sh exits with
# that rank's status (128 + signal for a rank killed by a signal); it exits 0 when every rank exits 0.
# For several machines run the command by hand on each, as torchrun would (README "Data-parallel training").
set -uo pipefail

usage() {
  echo "usage: tools/launch.sh --nproc N [--master-port P] [--master-addr A] -- COMMAND [ARGS...]" >&2
  exit 2
}

NPROC=
PORT=
ADDR=127.0.0.1
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) NPROC=${2:-}; shift 2 || usage ;;
    --master-port) PORT=${2:-}; shift 2 || usage ;;
    --master-addr) ADDR=${2:-}; shift 2 || usage ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[ $# -gt 0 ] || { echo "launch.sh: no command after --" >&2; usage; }
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --nproc must be a whole number >= 1, got '$NPROC'" >&2; exit 2; }
if [ -z "$PORT" ]; then
  # A port the kernel hands out as free now (the same small race torchrun's own choice has).
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
         2>/dev/null) || PORT=$(( 20000 + RANDOM % 30000 ))
fi
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || {
  echo "launch.sh: --master-port must be a port number (1-65535), got '$PORT'" >&2; exit 2; }

PIDS=()
STOPPING=0
stop_all() {  # $1: signal
  for p in "${PIDS[@]}"; do kill -"$1" "$p" 2>/dev/null; done
}
forward() {  # a signal to launch.sh goes to every rank; their exits then end the wait below
  STOPPING=1
  stop_all "$1"
}
trap 'forward INT' INT
trap 'forward TERM' TERM

for (( r = 0; r < NPROC; r++ )); do
  # A background command of a script ignores SIGINT unless the trap is reset before exec.
  ( trap - INT QUIT
    export RANK=$r LOCAL_RANK=$r WORLD_SIZE=$NPROC LOCAL_WORLD_SIZE=$NPROC MASTER_ADDR=$ADDR MASTER_PORT=$PORT
    exec "$@" ) &
  PIDS+=($!)
done

STATUS=0
KILLER=
LEFT=$NPROC
while [ "$LEFT" -gt 0 ]; do
  wait -n -p DONE "${PIDS[@]}"
  rc=$?
  if [ -z "${DONE:-}" ]; then continue; fi  # interrupted by a trapped signal: keep waiting for the ranks
  LEFT=$(( LEFT - 1 ))
  for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$DONE" ] && unset 'PIDS[i]'; done
  DONE=
  if [ "$rc" -ne 0 ] && [ "$STATUS" -eq 0 ]; then
    STATUS=$rc
    if [ "$STOPPING" -eq 0 ] && [ "$LEFT" -gt 0 ]; then
      echo "launch.sh: a rank exited with status $rc; stopping the other $LEFT" >&2
      STOPPING=1
      stop_all TERM
      ( sleep 10; for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done ) &
      KILLER=$!
    fi
  fi
done
[ -n "$KILLER" ] && kill "$KILLER" 2>/dev/null
exit "$STATUS"
