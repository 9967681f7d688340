"""Authenticated Kafka (SASL on the test broker's second listener: PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512): the right credentials work for both jobs, also with quotes, a backslash, a blank
and a semicolon in the user name and password; a wrong or missing password stops both with one
line; the password is never printed."""

import re

import pytest

from tests.conftest import SASL_PASSWORD, SASL_USER, SCRAM_PASSWORD, SCRAM_USER, SPECIAL_PASSWORD, SPECIAL_USER
from tests.helpers import job
from tests.integration.test_pipeline import read_csv


def credentials(password=SASL_PASSWORD, user=SASL_USER, mechanism="PLAIN"):
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": password,
    }


def stream_args(kafka, topic, folder, timeout_file):
    return [
        "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic,
        "--output", str(folder / "output"), "--checkpoint", str(folder / "checkpoint"),
        "--quarantine", str(folder / "quarantine"), "--config", str(timeout_file),
    ]


@pytest.fixture
def short_timeout(tmp_path):
    path = tmp_path / "pipeline.yml"
    path.write_text("source:\n  connect_timeout: 5\n")
    return path


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_right_credentials_run_the_whole_pipeline(kafka, spark, topic, tmp_path, short_timeout):
    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--count", "10",
                   env=credentials())
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=credentials())

    assert produced.returncode == 0, produced.stderr
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == list(range(1, 11))
    for result in (produced, streamed):
        assert SASL_PASSWORD not in result.stdout + result.stderr


def test_wrong_password_stops_both_jobs_with_an_authentication_error(kafka, topic, tmp_path, short_timeout):
    wrong = credentials("not-the-password")

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5", env=wrong)
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=wrong)

    for result in (produced, streamed):
        assert result.returncode == 1
        (line,) = error_lines(result)
        # The broker's own reason when it arrived before the connection closed, else the login named.
        assert re.search(rf"refused the (credentials|login) of user '{SASL_USER}' \(PLAIN\)", line), line
        assert "not-the-password" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


def test_no_credentials_read_and_write_nothing(kafka, bootstrap, topic, tmp_path, short_timeout):
    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5")
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout))

    assert (produced.returncode, streamed.returncode) == (1, 1)
    assert "cannot reach Kafka" in error_lines(produced)[0] and "cannot reach Kafka" in error_lines(streamed)[0]
    assert not (tmp_path / "output").exists()
    from pipeline_lib.kafka_client import KafkaSettings
    from pipeline_lib.kafka_client import topic_exists

    assert not topic_exists(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 10)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_special_characters_in_user_and_password_run_the_whole_pipeline(kafka, spark, topic, tmp_path, short_timeout, mechanism):
    # The user 'pi"pe line' with the password 'p"a\ss w0rd;': quoted and escaped in the broker's
    # JAAS entry (PLAIN), in the storage's SCRAM credentials, and in the Spark source's JAAS entry.
    login = credentials(SPECIAL_PASSWORD, SPECIAL_USER, mechanism)

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--count", "10", env=login)
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=login)

    assert produced.returncode == 0, produced.stderr
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == list(range(1, 11))
    for result in (produced, streamed):
        assert SPECIAL_PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_wrong_scram_password_stops_both_jobs_saying_the_credentials_were_refused(kafka, topic, tmp_path, short_timeout, mechanism):
    wrong = credentials("not-the-password", SCRAM_USER, mechanism)

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5", env=wrong)
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=wrong)

    for result in (produced, streamed):
        assert result.returncode == 1
        (line,) = error_lines(result)
        # The broker's own reason when it arrived before the connection closed, else the login named.
        assert re.search(rf"refused the (credentials|login) of user '{SCRAM_USER}' \({mechanism}\)", line), line
        if "refused the credentials" in line:
            assert "invalid credentials" in line, line
        assert "not-the-password" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


def test_the_scram_user_with_its_own_password_is_accepted_by_both_mechanisms(kafka):
    from pipeline_lib.kafka_client import KafkaSettings, topic_exists

    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        settings = KafkaSettings(
            bootstrap_servers=kafka.sasl_bootstrap_servers, topic="none-such", security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism, sasl_username=SCRAM_USER, sasl_password=SCRAM_PASSWORD,
        )
        assert topic_exists(settings, 10) is False
