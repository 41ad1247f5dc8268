"""The names of the files the aggregator writes into ``--out`` (a module of its own, so that
the client's export step can name them without importing the report's plotting stack)."""

FINAL_WEIGHTS = "final_weights.safetensors"
MODEL_ARCHITECTURE = "model_architecture.json"  # as the client registered it (Keras JSON)
ROUND_METRICS = "round_metrics.csv"
CLIENT_METRICS = "client_metrics.csv"
EVALUATION = "evaluation.json"
REPORT = "report.html"
SUMMARY = "summary.json"
