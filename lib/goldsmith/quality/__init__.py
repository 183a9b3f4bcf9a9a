"""Data quality: expectations (`expectations`), key and grain checks (`keys`), profiles (`profile`) and bias
(`bias`: the metrics and a trained model's assessment against its gates)."""
