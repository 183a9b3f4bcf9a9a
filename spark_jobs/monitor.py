"""spark-submit entry point: the monitor stage of a pipeline.

    spark-submit --master local[2] spark_jobs/monitor.py conf/pipelines/flights.yml [--set key=value] [--env ENV]
"""

import sys

from goldsmith.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:], "--stages", "monitor"]))
