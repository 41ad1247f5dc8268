"""Federated-learning client runtime (TensorFlow/Keras): data, model, training, transport.

Embedded into the KFP client component, so the code that runs in the pod is exactly the
code the tests import. It never imports kfp.
"""
