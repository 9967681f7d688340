"""jobs/stream.py --list-transforms, --list-sources, --list-sinks: one line each, with options."""

from tests.helpers import job


def test_list_transforms_gives_each_with_its_options_and_defaults():
    result = job("stream", "--list-transforms", timeout=120)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "add_processed_value(factor=2, source='value', target='processed_value'): Add ``target = source * factor``." in lines
    assert any(line.startswith("expect(name, condition, on_violation='warn', ") for line in lines)
    assert any(line.startswith("window_stats(window='10 seconds', watermark='30 seconds', ") for line in lines)
    assert [line.split("(")[0] for line in lines] == sorted(line.split("(")[0] for line in lines)


def test_list_sources_and_sinks_give_their_options_models():
    sources = job("stream", "--list-sources", timeout=120)
    sinks = job("stream", "--list-sinks", timeout=120)

    assert sources.returncode == sinks.returncode == 0
    assert any(line.startswith("kafka: starting_offsets='earliest', max_offsets_per_trigger=None, ") for line in sources.stdout.splitlines())
    assert "files: path (required)" in sources.stdout
    assert {line.split(":")[0] for line in sinks.stdout.splitlines()} >= {"console", "csv", "json", "kafka", "memory", "parquet"}
    assert "kafka: columns=None, topic (required), key='id'" in sinks.stdout.splitlines()
    assert "memory: columns=None, name='pipeline_output'" in sinks.stdout.splitlines()
