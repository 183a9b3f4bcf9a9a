"""spark-submit entry point: the profile stage of a pipeline (not `profile.py`: that would hide the standard module).

    spark-submit --master local[2] spark_jobs/profile_tables.py conf/pipelines/flights.yml [--set key=value] [--env ENV]
"""

import sys

from goldsmith.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:], "--stages", "profile"]))
