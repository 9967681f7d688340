"""pipeline_lib: pure DataFrame transforms, sources and sinks for the Kafka -> Spark pipeline."""

__version__ = "0.1.0"
