"""TLS on the test broker, with PEM files made for the run (tests/certificates.py): both jobs over
SSL and over mutual TLS; a client certificate from another CA, or none, refused by the broker; a
broker certificate not signed by ssl_cafile, or not naming the host the jobs connect to, refused
by the jobs. Each refusal is one line, and nothing is read or written."""

import subprocess

import pytest

from tests.helpers import job, stream_in_process
from tests.integration.test_pipeline import read_csv
from tests.integration.test_security import error_lines, short_timeout  # noqa: F401  (a fixture)


def tls(cafile, identity=None):
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(cafile)}
    if identity is not None:
        env.update(KAFKA_SSL_CERTFILE=str(identity.certfile), KAFKA_SSL_KEYFILE=str(identity.keyfile))
    return env


def stream_args(servers, topic, folder, config):
    return [
        "--bootstrap-servers", servers, "--topic", topic,
        "--output", str(folder / "output"), "--checkpoint", str(folder / "checkpoint"),
        "--quarantine", str(folder / "quarantine"), "--config", str(config),
    ]


def encrypted_copy(keyfile, folder, password):
    """The PEM key of ``keyfile`` as encrypted PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY"), by openssl."""
    encrypted = folder / "client.encrypted.key.pem"
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", str(keyfile), "-out", str(encrypted),
         "-passout", f"pass:{password}"],
        check=True, capture_output=True, timeout=30,
    )
    return encrypted


@pytest.mark.parametrize("listener", ["ssl", "mutual-tls", "mutual-tls-encrypted-key"])
def test_both_jobs_run_over_tls(kafka, tls_files, spark, topic, tmp_path, short_timeout, listener):
    if listener == "ssl":
        servers, env = kafka.ssl_bootstrap_servers, tls(tls_files.ca)
    else:
        servers, env = kafka.mtls_bootstrap_servers, tls(tls_files.ca, tls_files.client)
    if listener == "mutual-tls-encrypted-key":
        env.update(KAFKA_SSL_KEYFILE=str(encrypted_copy(tls_files.client.keyfile, tmp_path, "k3y pass")),
                   KAFKA_SSL_PASSWORD="k3y pass")

    produced = job("produce", "--bootstrap-servers", servers, "--topic", topic, "--count", "10", env=env)
    streamed = stream_in_process(*stream_args(servers, topic, tmp_path, short_timeout), env=env)

    assert produced.returncode == 0, produced.stderr
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert sorted(row["id"] for row in read_csv(spark, tmp_path).collect()) == list(range(1, 11))
    for result in (produced, streamed):
        assert "PRIVATE KEY" not in result.stdout + result.stderr
        assert "k3y pass" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("client", ["other-ca", "none"])
def test_the_broker_refuses_a_client_certificate_it_did_not_sign(kafka, tls_files, topic, tmp_path, short_timeout, client):
    identity = tls_files.other_client if client == "other-ca" else None
    env = tls(tls_files.ca, identity)
    servers = kafka.mtls_bootstrap_servers

    produced = job("produce", "--bootstrap-servers", servers, "--topic", topic, "--timeout", "5", env=env)
    streamed = stream_in_process(*stream_args(servers, topic, tmp_path, short_timeout), env=env)

    expected = f"ssl_certfile {identity.certfile}" if identity else "none given"
    for result in (produced, streamed):
        assert result.returncode == 1, result.stderr[-3000:]
        (line,) = error_lines(result)
        assert f"Kafka at {servers} refused the TLS client certificate ({expected}" in line, line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


@pytest.mark.slow
def test_the_jobs_refuse_a_broker_certificate_not_signed_by_ssl_cafile(kafka, tls_files, topic, tmp_path, short_timeout):
    # The broker's certificate is signed by the test CA; ssl_cafile names another one.
    env = tls(tls_files.other_ca)
    servers = kafka.ssl_bootstrap_servers

    produced = job("produce", "--bootstrap-servers", servers, "--topic", topic, "--timeout", "5", env=env)
    streamed = stream_in_process(*stream_args(servers, topic, tmp_path, short_timeout), env=env)

    for result in (produced, streamed):
        assert result.returncode == 1, result.stderr[-3000:]
        (line,) = error_lines(result)
        assert f"the TLS certificate of Kafka at {servers} is not trusted" in line, line
        assert f"not signed by the CA in ssl_cafile {tls_files.other_ca}" in line, line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()


@pytest.mark.slow
def test_the_jobs_refuse_a_broker_certificate_that_does_not_name_the_host_they_connect_to(
    kafka, tls_files, topic, tmp_path, short_timeout
):
    # The broker's certificate names IP:127.0.0.1 only; "localhost" reaches the same listener.
    env = tls(tls_files.ca)
    servers = kafka.ssl_bootstrap_servers.replace("127.0.0.1", "localhost")

    produced = job("produce", "--bootstrap-servers", servers, "--topic", topic, "--timeout", "5", env=env)
    streamed = stream_in_process(*stream_args(servers, topic, tmp_path, short_timeout), env=env)

    for result in (produced, streamed):
        assert result.returncode == 1, result.stderr[-3000:]
        (line,) = error_lines(result)
        assert f"the TLS certificate of Kafka at {servers} does not name the host in bootstrap_servers" in line, line
        assert "Hostname mismatch, certificate is not valid for 'localhost'" in line, line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()
