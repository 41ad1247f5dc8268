"""The federated-learning pipeline: definition, compile, submit and the local runner."""
