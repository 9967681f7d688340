#!/usr/bin/env bash
# make flow: run flows/simple-data-pipeline.yml once on Kestra's own engine (infra/kestra/run_flow.py)
# against a local Kafka, with its output, checkpoint and quarantine in .flow/.
# Starts a broker only if none answers on KAFKA_PORT, and stops only the one it started.
# Run it again: the checkpoint makes the second run add only the new records.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
KAFKA_HOME=${KAFKA_HOME:-.kafka}
KAFKA_PORT=${KAFKA_PORT:-9092}
FLOW_HOME=${FLOW_HOME:-.flow}
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
mkdir -p "$FLOW_HOME"
data=$(cd "$FLOW_HOME" && pwd)

started=0
if ! "$PY" -c "from kafka import KafkaAdminClient; KafkaAdminClient(bootstrap_servers='$BOOTSTRAP', bootstrap_timeout_ms=3000).close()" 2>/dev/null; then
  "$PY" infra/kafka/broker.py start --home "$KAFKA_HOME" --port "$KAFKA_PORT"
  started=1
fi
trap '[ "$started" = 1 ] && "$PY" infra/kafka/broker.py stop --home "$KAFKA_HOME"' EXIT

"$PY" infra/kestra/run_flow.py flows/simple-data-pipeline.yml \
  --input bootstrap_servers="$BOOTSTRAP" --input topic=input-data \
  --input output_path="$data/output" --input checkpoint_path="$data/checkpoint" \
  --input quarantine_path="$data/quarantine" --input project_dir="$(pwd)" "$@"
echo "CSV output: $FLOW_HOME/output (batch-*.csv: whole batches, for any reader)"
