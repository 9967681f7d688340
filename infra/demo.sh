#!/usr/bin/env bash
# make demo: produce 20 records into a local Kafka and stream them into CSV with spark-submit.
# Starts a broker only if none answers on KAFKA_PORT, and stops only the one it started.
# Run it again: the checkpoint makes the second run add only the 20 new records.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KAFKA_HOME=${KAFKA_HOME:-.kafka}
KAFKA_PORT=${KAFKA_PORT:-9092}
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
DEMO=${DEMO_DIR:-.demo}
TOPIC=${DEMO_TOPIC:-input-data}
mkdir -p "$DEMO"

started=0
if ! "$PY" -c "import sys; from kafka import KafkaAdminClient; KafkaAdminClient(bootstrap_servers='$BOOTSTRAP', bootstrap_timeout_ms=3000).close()" 2>/dev/null; then
  "$PY" infra/kafka/broker.py start --home "$KAFKA_HOME" --port "$KAFKA_PORT"
  started=1
else
  echo "Kafka already running on $BOOTSTRAP"
fi
trap '[ "$started" = 1 ] && "$PY" infra/kafka/broker.py stop --home "$KAFKA_HOME"' EXIT

# Ids go on from the highest one on the topic, so every run adds 20 new records.
"$PY" jobs/produce.py --bootstrap-servers "$BOOTSTRAP" --topic "$TOPIC" --count 20

PIPELINE_VENV="$(dirname "$(dirname "$PY")")" infra/spark/submit --master 'local[2]' --conf spark.ui.enabled=false \
  jobs/stream.py --bootstrap-servers "$BOOTSTRAP" --topic "$TOPIC" \
  --output "$DEMO/output" --checkpoint "$DEMO/checkpoint" --quarantine "$DEMO/quarantine" \
  --trigger available-now --show 1000
echo "CSV output: $DEMO/output (batch-*.csv: whole batches only, for any reader)"
echo "quarantine: $DEMO/quarantine   checkpoint: $DEMO/checkpoint"
