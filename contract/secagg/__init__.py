"""Secure aggregation (SecAgg+, Bonawitz et al. 2017; Bell et al. 2020): the aggregator learns
the sum of the participants' quantised, example-weighted updates and nothing about one of them.

Both sides import this package: ``crypto`` (X25519, HKDF-SHA256, AES-GCM, AES-CTR mask streams,
all from ``cryptography``), ``shamir`` (t-of-n secret sharing over a prime field), ``quantize``
(clipping and the mod 2^32 integer encoding), ``params`` (threshold, neighbours, the settings)
and ``messages`` (the four stages' wire messages).
"""
