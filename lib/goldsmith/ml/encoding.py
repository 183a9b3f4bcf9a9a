"""A numpy encoder of numeric and categorical features, fitted with Spark aggregates (no rows collected).

Numeric features: missing (null or NaN) becomes the training mean, then `(x - mean) / std` (population std;
a constant column has std 1). Categorical features: one-hot over the `max_categories` most frequent training
values plus one slot for every other value and for missing. Values are compared as Spark casts them to string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from goldsmith.config.models import FeatureSet
from goldsmith.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

OTHER = "__other__"


@dataclass(frozen=True)
class TabularEncoder:
    """Turns a pandas frame of features into a float32 matrix; picklable, numpy and pandas only."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    categorical: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @classmethod
    def fit_spark(cls, df: DataFrame, features: FeatureSet, max_categories: int = 50) -> TabularEncoder:
        """Fit on a Spark DataFrame: one aggregation for the numeric features, one for the categorical ones."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        if features.text:
            raise ConfigError(f"the tabular encoder has no text encoding (text features: {', '.join(features.text)})")
        if max_categories < 1:
            raise ConfigError(f"max_categories must be at least 1, not {max_categories}")
        numeric, categorical = list(features.numeric), list(features.categorical)
        means: list[float] = []
        stds: list[float] = []
        if numeric:
            values = {c: F.nanvl(F.col(c).cast("double"), F.lit(None).cast("double")) for c in numeric}
            aggs = [F.avg(v).alias(f"m{i}") for i, v in enumerate(values.values())]
            aggs += [F.stddev_pop(v).alias(f"s{i}") for i, v in enumerate(values.values())]
            row = df.agg(*aggs).first()
            assert row is not None
            for i in range(len(numeric)):
                mean, std = row[f"m{i}"], row[f"s{i}"]
                means.append(0.0 if mean is None else float(mean))
                stds.append(1.0 if std is None or not std > 1e-12 else float(std))
        found: dict[str, list[str]] = {c: [] for c in categorical}
        if categorical:
            pairs = F.array(
                *[F.struct(F.lit(c).alias("f"), F.col(c).cast("string").alias("v")) for c in categorical]
            )
            ranked = Window.partitionBy("f").orderBy(F.desc("n"), F.asc("v"))
            top = (
                df.select(F.explode(pairs).alias("p"))
                .select("p.f", "p.v")
                .where(F.col("v").isNotNull())
                .groupBy("f", "v")
                .agg(F.count(F.lit(1)).alias("n"))
                .withColumn("r", F.row_number().over(ranked))
                .where(F.col("r") <= max_categories)
                .collect()
            )
            for row in sorted(top, key=lambda r: (r["f"], r["r"])):
                found[row["f"]].append(row["v"])
        return cls(
            numeric=tuple(numeric),
            means=tuple(means),
            stds=tuple(stds),
            categorical=tuple(categorical),
            levels=tuple(tuple(found[c]) for c in categorical),
        )

    @property
    def width(self) -> int:
        """Columns of `transform`'s output."""
        return len(self.numeric) + sum(len(levels) + 1 for levels in self.levels)

    @property
    def feature_names(self) -> list[str]:
        """One name per output column: `x`, `c=value`, `c=__other__`."""
        names = list(self.numeric)
        for column, levels in zip(self.categorical, self.levels, strict=True):
            names += [f"{column}={level}" for level in levels] + [f"{column}={OTHER}"]
        return names

    def transform(self, pdf: pd.DataFrame) -> np.ndarray:
        """The encoded features of `pdf` (which has at least the encoder's columns): float32, (n, width)."""
        import pandas as pd

        n = len(pdf)
        out = np.zeros((n, self.width), dtype=np.float32)
        for i, column in enumerate(self.numeric):
            x = pd.to_numeric(pdf[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            x = np.where(np.isnan(x), self.means[i], x)
            out[:, i] = (x - self.means[i]) / self.stds[i]
        offset = len(self.numeric)
        rows = np.arange(n)
        for column, levels in zip(self.categorical, self.levels, strict=True):
            index = {level: j for j, level in enumerate(levels)}
            codes = pdf[column].map(lambda v, index=index: index.get(_spark_string(v), -1)).to_numpy(dtype=np.int64)
            codes = np.where(codes < 0, len(levels), codes)
            out[rows, offset + codes] = 1.0
            offset += len(levels) + 1
        return out


def _spark_string(value: Any) -> str | None:
    """A value as Spark's cast to string spells it (booleans `true`/`false`); None for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)
