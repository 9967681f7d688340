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
DEMO=.demo
mkdir -p "$DEMO"

started=0
if ! "$PY" -c "import sys; from kafka import KafkaAdminClient; KafkaAdminClient(bootstrap_servers='$BOOTSTRAP', bootstrap_timeout_ms=3000).close()" 2>/dev/null; then
  "$PY" infra/kafka/broker.py start --home "$KAFKA_HOME" --port "$KAFKA_PORT"
  started=1
fi
trap '[ "$started" = 1 ] && "$PY" infra/kafka/broker.py stop --home "$KAFKA_HOME"' EXIT

next_id=$(cat "$DEMO/next-id" 2>/dev/null || echo 1)
"$PY" jobs/produce.py --bootstrap-servers "$BOOTSTRAP" --topic input-data --count 20 --start-id "$next_id"
echo $((next_id + 20)) > "$DEMO/next-id"

jars=$(ls infra/spark/jars/*.jar | paste -sd, -)
"$(dirname "$PY")/spark-submit" --master 'local[2]' --py-files dist/pipeline_lib.zip --jars "$jars" \
  --conf spark.ui.enabled=false --driver-java-options '-Dlog4j2.level=warn' \
  jobs/stream.py --bootstrap-servers "$BOOTSTRAP" --topic input-data \
  --output "$DEMO/output" --checkpoint "$DEMO/checkpoint" --quarantine "$DEMO/quarantine" \
  --trigger available-now --show 1000
echo "CSV output: $DEMO/output (read it with spark.read.csv, which honours the sink log)"
echo "quarantine: $DEMO/quarantine   checkpoint: $DEMO/checkpoint"
