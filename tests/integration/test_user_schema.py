"""A record schema of the user's own on the real broker: pipelines/orders.yml run in-process,
the documentation's example planned, and --schema on the command line."""

import datetime
import json
import re
from decimal import Decimal

import pytest
from chispa import assert_df_equality

from pipeline_lib.pipeline import load_pipeline_config
from pipeline_lib.plan import make_plan
from pipeline_lib.run import run_pipeline
from tests.conftest import send_raw
from tests.helpers import ROOT, job

ORDERS_PIPELINE = ROOT / "pipelines" / "orders.yml"
ORDERS_OUTPUT = "order_id long, amount decimal(10,2), currency string, ts timestamp, amount_cents decimal(21,2), date date"


def orders_config(bootstrap, topic, folder, path=ORDERS_PIPELINE):
    """The pipeline of ``path`` on the test broker, its folders under ``folder``."""
    overrides = {
        "kafka.bootstrap_servers": bootstrap,
        "kafka.topic": topic,
        "output.path": str(folder / "output"),
        "quarantine.path": str(folder / "quarantine"),
        "checkpoint": str(folder / "checkpoint"),
    }
    return load_pipeline_config(str(path), overrides=overrides, environ={})


def payloads(*records):
    return [record if isinstance(record, bytes) else json.dumps(record).encode() for record in records]


def test_orders_land_in_their_own_columns_and_the_malformed_in_the_quarantine_naming_their_fields(
    spark, bootstrap, topic, tmp_path
):
    send_raw(
        bootstrap,
        topic,
        payloads(
            {"order_id": 1, "amount": 12.34, "currency": "EUR", "ts": "2024-05-08T15:20:00.123Z"},
            {"order_id": 2, "amount": 5, "currency": "USD", "ts": 1715268000.5},
            {"order_id": 3, "amount": "0.50", "currency": "EUR", "ts": "2024-05-09 23:59:59"},
            {"order_id": 4, "amount": 12.345, "currency": "EUR", "ts": "2024-05-08T10:00:00Z"},
            {"order_id": 5, "amount": 3, "ts": "2024-05-08T10:00:00Z"},
            {"order_id": 6, "amount": 3, "currency": "EUR", "ts": "yesterday"},
            b"{not json",
            {"order_id": 8, "amount": -1, "currency": "EUR", "ts": "2024-05-08T10:00:00Z"},
        ),
    )

    summary = run_pipeline(spark, orders_config(bootstrap, topic, tmp_path), emit=lambda line: None)

    output = spark.read.csv(str(tmp_path / "output"), header=True, schema=ORDERS_OUTPUT).orderBy("order_id")
    expected = spark.createDataFrame(
        [
            (1, Decimal("12.34"), "EUR", datetime.datetime(2024, 5, 8, 15, 20, 0, 123000), Decimal("1234.00"), datetime.date(2024, 5, 8)),
            (2, Decimal("5.00"), "USD", datetime.datetime(2024, 5, 9, 15, 20, 0, 500000), Decimal("500.00"), datetime.date(2024, 5, 9)),
            (3, Decimal("0.50"), "EUR", datetime.datetime(2024, 5, 9, 23, 59, 59), Decimal("50.00"), datetime.date(2024, 5, 9)),
        ],
        ORDERS_OUTPUT,
    )
    assert_df_equality(output, expected, ignore_nullable=True)
    assert sorted(path.parent.name for path in (tmp_path / "output").glob("*/*.csv")) == ["date=2024-05-08", "date=2024-05-09"]
    quarantine = spark.read.json(str(tmp_path / "quarantine")).orderBy("offset").collect()
    assert [(row.offset, row.reason) for row in quarantine] == [
        (3, "field 'amount' is not a valid decimal(10,2)"),
        (4, "missing required field 'currency'"),
        (5, "field 'ts' is not a valid timestamp"),
        (6, "invalid JSON"),
        (7, "expectation 'positive_amount' failed"),
    ]
    assert json.loads(quarantine[-1].payload) == {
        "order_id": 8,
        "amount": -1.0,
        "currency": "EUR",
        "ts": "2024-05-08T10:00:00.000Z",
    }
    assert (summary.written, summary.quarantined) == (3, 5)


def readme_yaml_example():
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("\n## Records of your own\n", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    return example


def test_the_readmes_own_schema_example_plans_with_its_fields_and_partitions(spark, bootstrap, topic, tmp_path):
    (tmp_path / "pipeline.yml").write_text(readme_yaml_example())
    send_raw(bootstrap, topic, [])  # the topic exists, empty

    plan = make_plan(orders_config(bootstrap, topic, tmp_path, tmp_path / "pipeline.yml"), spark)

    assert plan.schema.simpleString() == "struct<order_id:bigint,amount:decimal(10,2),currency:string,ts:timestamp>"
    assert plan.config.required == ("order_id", "amount", "currency", "ts")
    assert plan.sinks["output"].options.columns == ("order_id", "amount", "currency", "ts", "amount_cents", "date")
    assert (plan.sinks["output"].options.partition_by, plan.sinks["output"].options.max_files_per_batch) == (("date",), 4)


@pytest.mark.slow
def test_the_stream_job_reads_the_records_of_the_schema_given_on_its_command_line(spark, bootstrap, topic, tmp_path):
    send_raw(bootstrap, topic, payloads({"id": 1, "value": 5, "note": "first"}, {"id": 2, "value": 6}))

    result = job(
        "stream", "--bootstrap-servers", bootstrap, "--topic", topic, "--schema", "id long, value int, note string",
        "--output", str(tmp_path / "output"), "--quarantine", str(tmp_path / "quarantine"),
        "--checkpoint", str(tmp_path / "checkpoint"), timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: 2 rows written, 0 quarantined" in result.stdout
    rows = sorted(path.read_text() for path in (tmp_path / "output").glob("*.csv"))
    assert "".join(rows).splitlines() == ["id,value,note,processed_value", "1,5,first,10", "2,6,,12"]
