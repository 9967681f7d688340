"""Stream Kafka records through the transforms into CSV (Kestra task ``process_data``).

    spark-submit --py-files dist/pipeline_lib.zip --jars <connector jars> jobs/stream.py \\
        --bootstrap-servers 127.0.0.1:9092 --topic input-data --output out --checkpoint chk \\
        --quarantine quarantine --trigger available-now
"""

import sys

from pipeline_lib.cli import stream_main

if __name__ == "__main__":
    sys.exit(stream_main())
