"""Send generated records to Kafka (Kestra task ``ingest_data``).

python jobs/produce.py --bootstrap-servers 127.0.0.1:9092 --topic input-data --count 20
"""

import sys

from pipeline_lib.cli import produce_main

if __name__ == "__main__":
    sys.exit(produce_main())
