"""The client's log names the devices TensorFlow trains on, and says so when a GPU the pod
was given goes unused (a CPU-only TensorFlow image on a GPU node)."""

import logging

from client_component.devices import device_summary, log_devices

CPU = "/physical_device:CPU:0"
GPU = "/physical_device:GPU:0"


def test_a_gpu_in_use_is_named():
    line, warning = device_summary([CPU, GPU], {"NVIDIA_VISIBLE_DEVICES": "GPU-1a2b"})
    assert line == "TensorFlow devices: CPU:0, GPU:0 (training on GPU)"
    assert warning is None


def test_a_gpu_the_pod_was_given_but_tensorflow_cannot_see_is_a_warning():
    line, warning = device_summary([CPU], {"NVIDIA_VISIBLE_DEVICES": "GPU-1a2b"})
    assert line.endswith("(training on CPU)")
    assert "'GPU-1a2b'" in warning and "client_image=tensorflow/tensorflow:<version>-gpu" in warning


def test_no_gpu_given_no_warning():
    for environ in ({}, {"NVIDIA_VISIBLE_DEVICES": "void"}, {"NVIDIA_VISIBLE_DEVICES": ""}):
        assert device_summary([CPU], environ)[1] is None


def test_this_machine_logs_its_real_devices(caplog, monkeypatch):
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    with caplog.at_level(logging.INFO, logger="client_component"):
        log_devices()
    assert any(r.message.startswith("TensorFlow devices: CPU:0") for r in caplog.records)
