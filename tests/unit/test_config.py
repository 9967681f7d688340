"""Configuration: defaults < YAML file < environment < flags; every bad value names its field."""

import pytest

from pipeline_lib.config import ConfigError
from pipeline_lib.kafka_client import KafkaSettings, spark_options
from pipeline_lib.pipeline import TransformSpec, load_pipeline_config
from pipeline_lib.plan import make_plan
from pipeline_lib.producer import load_producer_config
from pipeline_lib.sources import build_source
from pipeline_lib.triggers import spark_trigger


def write(tmp_path, text):
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    return str(path)


def test_defaults_describe_the_default_pipeline():
    config = load_pipeline_config(environ={})

    assert (config.kafka.bootstrap_servers, config.kafka.topic, config.output.format, config.trigger) == (
        "127.0.0.1:9092", "input-data", "csv", "available-now",
    )
    assert config.transforms == (TransformSpec("add_processed_value"),)
    assert config.quarantine.format == "json"


def test_file_overrides_defaults(tmp_path):
    path = write(tmp_path, "kafka:\n  topic: readings\noutput:\n  format: parquet\n")

    config = load_pipeline_config(path, environ={})

    assert (config.kafka.topic, config.output.format, config.output.location) == ("readings", "parquet", "output")


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, "kafka:\n  bootstrap_servers: filehost:9092\n")

    config = load_pipeline_config(path, environ={"KAFKA_BOOTSTRAP_SERVERS": "envhost:9093"})

    assert config.kafka.bootstrap_servers == "envhost:9093"


def test_flags_override_environment_and_none_means_not_given(tmp_path):
    path = write(tmp_path, "trigger: once\n")

    config = load_pipeline_config(
        path,
        {"kafka.bootstrap_servers": "flaghost:1", "trigger": None},
        environ={"KAFKA_BOOTSTRAP_SERVERS": "envhost:2"},
    )

    assert (config.kafka.bootstrap_servers, config.trigger) == ("flaghost:1", "once")


def test_transforms_are_listed_by_name_or_with_options(tmp_path):
    path = write(tmp_path, "transforms:\n  - with_event_time\n  - name: add_processed_value\n    options: {factor: 3}\n")

    config = load_pipeline_config(path, environ={})

    assert config.transforms == (TransformSpec("with_event_time"), TransformSpec("add_processed_value", {"factor": 3}))


@pytest.mark.parametrize(
    "overrides, field, allowed",
    [
        ({"trigger": "sometimes"}, "trigger", "available-now, once, processing-time"),
        ({"kafka.bootstrap_servers": "localhost"}, "kafka.bootstrap_servers", "host:port"),
        ({"kafka.bootstrap_servers": "127.0.0.1:99999"}, "kafka.bootstrap_servers", "port 1-65535"),
        ({"kafka.topic": "bad topic!"}, "kafka.topic", "Kafka topic name"),
        ({"kafka.security_protocol": "TLS"}, "kafka.security_protocol", "SASL_PLAINTEXT"),
        ({"kafka.security_protocol": "SASL_PLAINTEXT", "kafka.sasl_mechanism": "GSSAPI"}, "kafka.sasl_mechanism", "PLAIN"),
        ({"kafka.security_protocol": "SASL_PLAINTEXT", "kafka.sasl_mechanism": "PLAIN"}, "kafka.sasl_username", "required"),
        ({"kafka.ssl_cafile": "/no/such/ca.pem"}, "kafka.ssl_cafile", "no such file"),
        ({"source.type": "socket"}, "source.type", "known: files, kafka, rate"),
        ({"source.starting_offsets": "yesterday"}, "source.starting_offsets", "earliest, latest"),
        ({"source.max_offsets_per_trigger": 0}, "source.max_offsets_per_trigger", "above 0"),
        ({"source.max_offsets_per_trigger": "many"}, "source.max_offsets_per_trigger", "whole number"),
        ({"source.type": "files"}, "source.path", "required"),
        ({"source.type": "rate"}, "trigger", "processing-time"),
        ({"output.format": "xlsx"}, "output.format", "known: console, csv, json, kafka, memory, parquet"),
        ({"quarantine.format": "csv"}, "quarantine.format", "json or parquet"),
        ({"quarantine.path": "output"}, "quarantine.path", "must differ from output.path"),
        ({"max_payload_bytes": -1}, "max_payload_bytes", "above 0"),
        ({"outptu.path": "x"}, "outptu", "unknown setting"),
        ({"output.colour": "x"}, "output.colour", "unknown setting; allowed: columns, path"),
        ({"source.fail_on_data_loss": "sometimes"}, "source.fail_on_data_loss", "true or false"),
    ],
)
def test_bad_pipeline_setting_names_its_field(overrides, field, allowed):
    with pytest.raises(ConfigError) as raised:
        load_pipeline_config(overrides=overrides, environ={})

    assert raised.value.field == field
    assert allowed in str(raised.value)


def test_unknown_transform_names_its_position_and_the_known_ones(tmp_path):
    path = write(tmp_path, "transforms: [add_processed_value, triple]\n")

    with pytest.raises(ConfigError, match=r"transforms\[1\]: unknown transform 'triple'; known: .*parse_json"):
        load_pipeline_config(path, environ={})


def test_parse_stage_cannot_be_listed_as_a_transform(tmp_path):
    path = write(tmp_path, "transforms: [parse_json, add_processed_value]\n")

    with pytest.raises(ConfigError, match=r"transforms\[0\]: parse_json is part of the parse stage, which always runs first"):
        load_pipeline_config(path, environ={})


def test_bad_transform_option_is_a_config_error(tmp_path):
    path = write(tmp_path, "transforms:\n  - name: add_processed_value\n    options: {factor: two}\n")

    with pytest.raises(ConfigError, match=r"transforms\[0\]: factor must be a number"):
        load_pipeline_config(path, environ={})


def test_output_path_that_is_a_file_is_refused(tmp_path):
    existing = tmp_path / "out.csv"
    existing.write_text("x")

    with pytest.raises(ConfigError, match="output.path: .* is a file, not a folder"):
        make_plan(load_pipeline_config(overrides={"output.path": str(existing)}, environ={}))


def test_checkpoint_that_is_a_file_is_refused(tmp_path):
    existing = tmp_path / "chk"
    existing.write_text("x")

    with pytest.raises(ConfigError, match="checkpoint: .* is a file"):
        make_plan(load_pipeline_config(overrides={"checkpoint": str(existing)}, environ={}))


def test_unreadable_or_invalid_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config: cannot read"):
        load_pipeline_config(str(tmp_path / "missing.yml"), environ={})
    with pytest.raises(ConfigError, match="config: .* is not valid YAML"):
        load_pipeline_config(write(tmp_path, "kafka: [unclosed\n"), environ={})
    with pytest.raises(ConfigError, match="config: .* must hold a mapping"):
        load_pipeline_config(write(tmp_path, "- a\n- b\n"), environ={})


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"count": -1}, "count"),
        ({"count": "many"}, "count"),
        ({"rate": 0}, "rate"),
        ({"start_id": -5}, "start_id"),
        ({"partitions": 0}, "partitions"),
        ({"timeout": 0}, "timeout"),
        ({"kafka.bootstrap_servers": "nohost"}, "kafka.bootstrap_servers"),
    ],
)
def test_bad_producer_setting_names_its_field(overrides, field):
    with pytest.raises(ConfigError) as raised:
        load_producer_config(overrides=overrides, environ={})

    assert raised.value.field == field


@pytest.mark.parametrize(
    "trigger, expected",
    [
        ("available-now", {"availableNow": True}),
        ("once", {"once": True}),
        ("processing-time=5s", {"processingTime": "5 seconds"}),
        ("processing-time=250ms", {"processingTime": "250 milliseconds"}),
        ("processing-time=1m", {"processingTime": "1 minutes"}),
    ],
)
def test_trigger_strings_map_to_spark_triggers(trigger, expected):
    assert spark_trigger(trigger) == expected


def test_password_is_not_in_the_config_repr():
    kafka = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="hunter2")

    assert "hunter2" not in repr(kafka)


def test_the_streams_plan_shows_no_sasl_password(spark):
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:9", topic="t", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u", sasl_password="hunter2",
    )

    plan = build_source({"type": "kafka"}, kafka).read_stream(spark)._jdf.queryExecution().toString()

    assert "hunter2" not in plan and "kafka.sasl.jaas.config=*********(redacted)" in plan


def test_the_streams_plan_shows_neither_the_client_key_nor_its_password(spark, tmp_path):
    (tmp_path / "client.pem").write_text("-----BEGIN CERTIFICATE-----\nCERTIFICATE\n-----END CERTIFICATE-----\n")
    (tmp_path / "client.key").write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nKEYBYTES\n-----END ENCRYPTED PRIVATE KEY-----\n")
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:9", topic="t", security_protocol="SSL", ssl_certfile=str(tmp_path / "client.pem"),
        ssl_keyfile=str(tmp_path / "client.key"), ssl_password="hunter2",
    )

    plan = build_source({"type": "kafka"}, kafka).read_stream(spark)._jdf.queryExecution().toString()

    assert "KEYBYTES" not in plan and "hunter2" not in plan
    assert "kafka.ssl.keystore.key=*********(redacted)" in plan and "kafka.ssl.key.password=*********(redacted)" in plan


@pytest.mark.parametrize("options, milliseconds", [({}, "15000"), ({"request_timeout": 4}, "4000")])
def test_the_querys_kafka_requests_time_out_after_the_sources_request_timeout(spark, options, milliseconds):
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic="t")

    plan = build_source({"type": "kafka", **options}, kafka).read_stream(spark)._jdf.queryExecution().toString()

    assert f"kafka.request.timeout.ms={milliseconds}" in plan and f"kafka.default.api.timeout.ms={milliseconds}" in plan


def test_security_settings_reach_both_clients_from_one_place():
    kafka = KafkaSettings(
        bootstrap_servers="h:1", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u", sasl_password="p",
    )

    assert kafka.client_options() == {
        "bootstrap_servers": "h:1", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u", "sasl_plain_password": "p",
    }
    assert spark_options(kafka)["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";'
    )
    assert spark_options(kafka)["kafka.security.protocol"] == "SASL_PLAINTEXT"


def test_security_settings_come_from_the_environment():
    config = load_producer_config(
        environ={
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
        }
    )

    assert (config.kafka.sasl_username, config.kafka.sasl_password) == ("u", "p")


def openssl_key(folder, *encryption):
    """A new EC key in PEM, encrypted by openssl pkcs8 with ``encryption`` and the password "pw"."""
    import subprocess

    plain, encrypted = folder / "plain.key.pem", folder / "encrypted.key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(plain)],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "pkcs8", "-topk8", *encryption, "-in", str(plain), "-out", str(encrypted), "-passout", "pass:pw"],
                   check=True, capture_output=True, timeout=30)
    (folder / "client.pem").write_text("-----BEGIN CERTIFICATE-----\nCERTIFICATE\n-----END CERTIFICATE-----\n")
    return encrypted


def tls_settings(folder, keyfile, password):
    return KafkaSettings(
        security_protocol="SSL", ssl_certfile=str(folder / "client.pem"), ssl_keyfile=str(keyfile), ssl_password=password
    )


def test_a_pbes2_encrypted_key_is_refused_for_the_spark_job_naming_the_field_and_the_fix(tmp_path):
    keyfile = openssl_key(tmp_path, "-v2", "aes-256-cbc")

    with pytest.raises(ConfigError, match=r"^kafka.ssl_keyfile: .* is encrypted with PBES2.*-v1 PBE-SHA1-3DES"):
        spark_options(tls_settings(tmp_path, keyfile, "pw"))


def test_an_encrypted_key_without_its_password_is_refused_naming_ssl_password(tmp_path):
    keyfile = openssl_key(tmp_path, "-v1", "PBE-SHA1-3DES")

    with pytest.raises(ConfigError, match=r"^kafka.ssl_password: is needed: .* is an encrypted key"):
        spark_options(tls_settings(tmp_path, keyfile, None))


def test_a_pbes1_encrypted_key_goes_to_spark_with_its_password(tmp_path):
    keyfile = openssl_key(tmp_path, "-v1", "PBE-SHA1-3DES")

    options = spark_options(tls_settings(tmp_path, keyfile, "pw"))

    assert options["kafka.ssl.keystore.key"] == keyfile.read_text() and options["kafka.ssl.key.password"] == "pw"
