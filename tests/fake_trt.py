"""A stand-in for the tensorrt module that records what our builder asks of it.

It tests our control flow per TensorRT release (which flags, which APIs, which
errors) — never a claim that TensorRT itself does something. Only the attributes the
release has are present, so calling an API the release lacks fails the test."""

from __future__ import annotations

import types


class _Enum:
    def __init__(self, *names):
        for i, n in enumerate(names):
            setattr(self, n, f"{n}")


def make_fake_trt(feats, inputs=(("input", (-1, 1, 8, 8)),), build_result=b"ENGINE", errors_on_build=(),
                  dla_cores=0, parse_errors=()):
    calls = []
    trt = types.SimpleNamespace(calls=calls)

    class _Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    Severity = _Severity

    class ILogger:
        Severity = _Severity

        def __init__(self, *a):
            pass

    class Logger(ILogger):
        ERROR = Severity.ERROR

    trt.ILogger, trt.Logger = ILogger, Logger
    trt.init_libnvinfer_plugins = lambda logger, ns: calls.append("init_plugins")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1) \
        if feats.explicit_batch_flag else types.SimpleNamespace(STRONGLY_TYPED=1)
    flags = ["FP16", "INT8", "GPU_FALLBACK", "TF32"] if feats.weak_typing else ["GPU_FALLBACK", "TF32"]
    trt.BuilderFlag = _Enum(*flags)
    trt.MemoryPoolType = _Enum("WORKSPACE")
    trt.DeviceType = _Enum("GPU", "DLA")
    trt.ProfilingVerbosity = _Enum("DETAILED")
    if feats.progress_monitor:
        class IProgressMonitor:
            def __init__(self):
                pass
        trt.IProgressMonitor = IProgressMonitor

    class Tensor:
        def __init__(self, name, shape, dtype="FLOAT"):
            self.name, self.shape, self.dtype = name, shape, f"DataType.{dtype}"

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs = [Tensor(*i) for i in inputs]

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class Err:
        def __init__(self, text, node):
            self.text, self._node = text, node

        def desc(self):
            return self.text

        def node_name(self):
            return self._node

    class OnnxParser:
        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse", path))
            return not parse_errors

        @property
        def num_errors(self):
            return len(parse_errors)

        def get_error(self, i):
            return Err(*parse_errors[i])

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

    class TimingCache:
        def serialize(self):
            return b"TIMING"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pools = [], [], {}

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_flag(self, f):
            self.flags.append(f)

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

        if feats.int8_calibrators:
            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

        def __setattr__(self, name, value):
            if name == "builder_optimization_level" and not feats.builder_optimization_level:
                raise AttributeError(name)
            if name == "progress_monitor" and not feats.progress_monitor:
                raise AttributeError(name)
            if name == "int8_calibrator" and not feats.int8_calibrators:
                raise AttributeError(name)
            object.__setattr__(self, name, value)

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.logger = logger
            trt.builder = self

        def create_network(self, flags):
            self.network = Network(flags)
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append("build")
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None and "INT8" in config.flags:
                _calibrate(calibrator, network, config)
            for e in errors_on_build:
                self.logger.log(Severity.ERROR, e)
            return build_result

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return None if data != build_result else types.SimpleNamespace()

    def _calibrate(calibrator, network, config):
        # What TensorRT <= 10.x does with an explicit-batch network: each batch has the
        # input's network shape (the calibration profile's for dynamic inputs); an
        # exception in get_batch is logged by the binding and ends calibration.
        names = [t.name for t in network.inputs]
        profile = getattr(config, "calibration_profile", None)
        shapes = {t.name: profile.shapes[t.name][1] if profile else tuple(t.shape) for t in network.inputs}
        if calibrator.read_calibration_cache():
            calls.append(("calibration", "from cache"))
            return
        while True:
            try:
                pointers = calibrator.get_batch(names)
            except Exception as exc:  # noqa: BLE001 - the real binding swallows it too
                calls.append(("calibration_exception", str(exc)))
                pointers = None
            if not pointers:
                break
            calls.append(("calib_batch", {n: shapes[n] for n in names}, list(pointers)))
        calibrator.write_calibration_cache(b"CALIBRATION")

    if feats.int8_calibrators:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass
        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt
