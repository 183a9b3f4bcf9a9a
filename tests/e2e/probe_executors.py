"""Submitted to the test cluster: prints, as JSON, where the executors import goldsmith from (the wheel)."""

import json

from pyspark.sql import SparkSession


def where(_: object) -> object:
    import goldsmith

    yield goldsmith.__file__


if __name__ == "__main__":
    spark = SparkSession.builder.appName("goldsmith-probe").getOrCreate()
    paths = spark.sparkContext.parallelize(range(4), 4).mapPartitions(where).collect()
    print("executors import goldsmith from: " + json.dumps(sorted(set(paths))))
    spark.stop()
