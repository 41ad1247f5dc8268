"""Federated-learning aggregator runtime: framework-free (numpy, flask, waitress).

This package is embedded into the KFP aggregator and service components, so the code
that runs in the pod is exactly the code the tests import. It never imports kfp or
TensorFlow.
"""
