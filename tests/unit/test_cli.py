"""Bad options stop both jobs before any work: one line naming the option, exit code 2."""

import pytest

from tests.helpers import job


def assert_one_line_config_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--trigger", "whenever"], ["trigger", "available-now"]),
        (["--bootstrap-servers", "no-port"], ["--bootstrap-servers", "host:port"]),
        (["--format", "xlsx"], ["--format", "csv, json, kafka, memory, parquet"]),
        (["--source", "socket"], ["--source", "files, kafka, rate"]),
        (["--starting-offsets", "middle"], ["--starting-offsets", "earliest, latest"]),
        (["--max-offsets-per-trigger", "-5"], ["--max-offsets-per-trigger", "above 0"]),
        (["--connect-timeout", "0"], ["--connect-timeout", "above 0"]),
        (["--max-offsets-per-trigger", "lots"], ["--max-offsets-per-trigger", "invalid int"]),
        (["--output", "setup.cfg"], ["--output", "is a file"]),
        (["--show", "-1"], ["--show"]),
        (["--no-such-flag"], ["unrecognized arguments"]),
    ],
)
def test_stream_job_rejects_bad_option(args, fragments):
    assert_one_line_config_error(job("stream", *args, timeout=60), *fragments)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--count", "-1"], ["--count", "0 or more"]),
        (["--count", "ten"], ["--count", "invalid int"]),
        (["--rate", "0"], ["--rate", "above 0"]),
        (["--partitions", "0"], ["--partitions"]),
        (["--bootstrap-servers", "host:port"], ["--bootstrap-servers"]),
        (["--run-start", "2024-05-08T15:20:00Z"], ["--run-start", "needs run_id"]),
        # A run is one Kafka transaction, which the broker ends after 15 minutes by default.
        (["--run-id", "r1", "--count", "7810", "--rate", "10"], ["--rate", "at most 780s", "take 781s"]),
    ],
)
def test_produce_job_rejects_bad_option(args, fragments):
    assert_one_line_config_error(job("produce", *args, timeout=60), *fragments)


def test_config_file_errors_name_the_field(tmp_path):
    config = tmp_path / "bad.yml"
    config.write_text("transforms: [add_processed_value, no_such_transform]\n")

    result = job("stream", "--config", str(config), timeout=60)

    assert_one_line_config_error(result, "transforms[1]", "unknown transform 'no_such_transform'")


def test_config_file_with_unknown_sink_type_names_the_field(tmp_path):
    config = tmp_path / "bad.yml"
    config.write_text("quarantine:\n  format: excel\n")

    assert_one_line_config_error(job("stream", "--config", str(config), timeout=60), "quarantine.format")
