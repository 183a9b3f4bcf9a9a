"""spark-submit entry point: the profile stage of a pipeline.

    spark-submit --master local[2] spark_jobs/profile.py conf/pipelines/flights.yml [--set key=value] [--env ENV]
"""

import sys

from goldsmith.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:], "--stages", "profile"]))
