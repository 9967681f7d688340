"""Authenticated Kafka (SASL on the test broker's second listener: PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512): the right credentials work for both jobs, also with quotes, a backslash, a blank
and a semicolon in the user name and password; a wrong or missing password stops both with one
line, which tells a refused login from a broker that never answered; the password is never
printed."""

import re
import time

import pytest

from tests.conftest import SASL_PASSWORD, SASL_USER, SCRAM_PASSWORD, SCRAM_USER, SPECIAL_PASSWORD, SPECIAL_USER
from tests.helpers import job, stream_in_process
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


@pytest.mark.slow
def test_right_credentials_run_the_whole_pipeline(kafka, spark, topic, tmp_path, short_timeout):
    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--count", "10",
                   env=credentials())
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=credentials())

    assert produced.returncode == 0, produced.stderr
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == list(range(1, 11))
    for result in (produced, streamed):
        assert SASL_PASSWORD not in result.stdout + result.stderr


def refusal_pattern(servers, user, mechanism, reason):
    """The line of a refused login: the broker's own reason, or, when the broker closed the
    connection before that reason arrived, the login named as refused by the broker."""
    broker = f"Kafka at {re.escape(servers)}"
    login = rf"of user '{re.escape(user)}' \({mechanism}\)"
    return (
        rf"^error: .*{broker} refused the credentials {login}: {re.escape(reason)}"
        rf"|^error: .*{broker} refused the login {login}: it closed the connection without sending its reason$"
    )


@pytest.mark.slow
def test_wrong_password_stops_both_jobs_with_the_brokers_refusal(kafka, topic, tmp_path, short_timeout):
    wrong = credentials("not-the-password")

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5", env=wrong)
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=wrong)

    for result in (produced, streamed):
        assert result.returncode == 1
        (line,) = error_lines(result)
        reason = "Authentication failed: Invalid username or password"
        assert re.search(refusal_pattern(kafka.sasl_bootstrap_servers, SASL_USER, "PLAIN", reason), line), line
        assert "cannot reach" not in line, line
        assert "not-the-password" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


def test_a_refused_login_ends_the_wait_at_the_refusal_not_at_the_timeout(kafka):
    from pipeline_lib.kafka_client import KafkaAuthenticationError, KafkaSettings, admin_client

    settings = KafkaSettings(
        bootstrap_servers=kafka.sasl_bootstrap_servers, topic="anything", security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN", sasl_username=SASL_USER, sasl_password="not-the-password",
    )

    for _ in range(3):  # on loopback the broker's answer and its close mostly come in one read
        started = time.monotonic()
        with pytest.raises(KafkaAuthenticationError, match="Invalid username or password"):
            admin_client(settings, timeout=120)
        assert time.monotonic() - started < 12  # a tenth of the timeout: the first refusal ended it


@pytest.mark.slow
def test_a_login_where_nothing_answers_says_so_without_claiming_a_refusal(tmp_path, short_timeout):
    from infra.kafka.broker import free_port

    silent = f"127.0.0.1:{free_port()}"
    login = credentials()

    produced = job("produce", "--bootstrap-servers", silent, "--topic", "anything", "--timeout", "3", env=login, timeout=60)
    streamed = job(
        "stream", "--bootstrap-servers", silent, "--topic", "anything", "--output", str(tmp_path / "output"),
        "--checkpoint", str(tmp_path / "checkpoint"), "--quarantine", str(tmp_path / "quarantine"),
        "--config", str(short_timeout), env=login, timeout=120,
    )

    for result in (produced, streamed):
        assert result.returncode == 1
        (line,) = error_lines(result)
        assert re.search(rf"cannot reach Kafka at {re.escape(silent)} within \d+s: ", line), line
        assert "refused" not in line and "login" not in line, line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


@pytest.mark.slow
def test_no_credentials_read_and_write_nothing(kafka, bootstrap, topic, tmp_path, short_timeout):
    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5")
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout))

    assert (produced.returncode, streamed.returncode) == (1, 1)
    assert "cannot reach Kafka" in error_lines(produced)[0] and "cannot reach Kafka" in error_lines(streamed)[0]
    assert not (tmp_path / "output").exists()
    from pipeline_lib.kafka_client import KafkaSettings, topic_exists

    assert not topic_exists(KafkaSettings(bootstrap_servers=bootstrap, topic=topic), 10)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_special_characters_in_user_and_password_run_the_whole_pipeline(kafka, spark, topic, tmp_path, short_timeout, mechanism):
    # The user 'pi"pe line' with the password 'p"a\ss w0rd;': quoted and escaped in the broker's
    # JAAS entry (PLAIN), in the storage's SCRAM credentials, and in the Spark source's JAAS entry.
    login = credentials(SPECIAL_PASSWORD, SPECIAL_USER, mechanism)

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--count", "10", env=login)
    streamed = stream_in_process(*stream_args(kafka, topic, tmp_path, short_timeout), env=login)

    assert produced.returncode == 0, produced.stderr
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == list(range(1, 11))
    for result in (produced, streamed):
        assert SPECIAL_PASSWORD not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_wrong_scram_password_stops_both_jobs_saying_the_credentials_were_refused(kafka, topic, tmp_path, short_timeout, mechanism):
    wrong = credentials("not-the-password", SCRAM_USER, mechanism)

    produced = job("produce", "--bootstrap-servers", kafka.sasl_bootstrap_servers, "--topic", topic, "--timeout", "5", env=wrong)
    streamed = job("stream", *stream_args(kafka, topic, tmp_path, short_timeout), env=wrong)

    for result in (produced, streamed):
        assert result.returncode == 1
        (line,) = error_lines(result)
        reason = f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
        assert re.search(refusal_pattern(kafka.sasl_bootstrap_servers, SCRAM_USER, mechanism, reason), line), line
        assert "cannot reach" not in line, line
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
