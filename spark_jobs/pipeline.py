"""spark-submit entry point: every stage of a pipeline in one Spark application.

    spark-submit --master local[2] spark_jobs/pipeline.py conf/pipelines/flights.yml [--stages ...] [--set k=v]
"""

import sys

from goldsmith.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
