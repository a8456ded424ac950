"""A strict stand-in for the ``tensorrt`` module, generated from NVIDIA's own binding
sources (the per-release API surfaces in ``tests/trt_api/``, see tools/trt-api-surface).

It tests our control flow per TensorRT release — never a claim that TensorRT builds or
runs anything. What makes it strict:

* only the classes, enums (with the release's numeric values), module functions,
  methods and properties the release's bindings define exist; anything else raises
  ``AttributeError`` as the real module does;
* every call is checked against the release's signatures (keyword names, arity;
  positional-only where pybind11 has no argument names) and raises ``TypeError``;
* read-only properties refuse assignment, objects refuse unknown attributes;
* subclasses of TensorRT's interface classes (ILogger, IProgressMonitor, the INT8
  calibrators) must call the base ``__init__`` (pybind11's rule);
* a method the release has but this stand-in does not model raises NotImplementedError
  (a test that needs it must model it here, as the real binding behaves).

Modelled behaviour (as the real bindings do): ``IOptimizationProfile.set_shape`` raises
``RuntimeError`` on inconsistent shapes, ``create_timing_cache`` and
``deserialize_cuda_engine`` return None on bad data (timing caches: anything but what the
stand-in serialized), the builder drives INT8 calibrators
and progress monitors, engines deserialize (from the bytes the stand-in's builder wrote,
for the same release only) to an object with IO tensors, profiles, execution contexts
and an engine inspector, and the plugin registry has ``load_library`` where the release
has it. Recordings for tests live under ``trt._fake`` (no TensorRT attribute starts with
an underscore).

TensorRT's runtime rules it enforces (each cites its source at the code):

* R1 plugin registry before deserialization: a plugin layer deserializes only when its
  creator is registered (built-ins by ``init_libnvinfer_plugins``, libraries by
  ``IPluginRegistry.load_library``); otherwise the release's log line and None;
* R2 one optimization profile per concurrent execution context of a dynamic-shape
  engine: a profile held by another live context is refused (False), and enqueueing a
  context that shares its profile with another live context fails;
* R3 ``set_optimization_profile_async`` semantics: False when out of range; 8.5 gives
  only the first context profile 0 implicitly, 10.x every new context; the enqueue stream
  must be the selection stream or the selection stream must have been synchronized;
* R4 data-dependent output shapes: ``get_tensor_shape`` keeps -1; enqueue fails unless an
  ``IOutputAllocator`` is set, which is driven as the release's binding drives it
  (``reallocate_output`` on 8.x; ``reallocate_output_async`` when overridden on 10.x);
* R5 shape-tensor inputs live in host memory (int32 on 8.x): a device address is refused.
* R6 shape-tensor profile values: ``set_shape_input`` takes values (int32 through
  setShapeValues up to 10.10, int64 through setShapeValuesV2 from 10.11), three calls with one
  count and min <= opt <= max; dims for a shape tensor or values for an execution tensor are
  refused at build time;
* R7 TensorRT 11 has no ``BuilderFlag.FP16``/``INT8`` (strongly typed only): the release's API
  surface (trt_api/surface-11.1.json, from NvInfer.h release/11.1) has no such members;
* R8 implicit INT8 calibration: a network with runtime dimensions (dynamic or shape-tensor
  inputs) needs a calibration profile, which must satisfy every rule an optimization profile
  does (shape tensors take values, others dims); calibration runs at its opt shapes and
  values, reading each input's bytes at that shape from the pointer ``get_batch`` returned
  (readable when a test registered the memory in ``DEVICE_MEMORY``), and a shape-tensor
  batch holding other values than the profile's is refused.

Leak accounting for tests: ``trt._fake.live_contexts`` (a WeakSet of execution contexts).
"""

from __future__ import annotations

import functools
import json
import os
import types
import weakref

SURFACE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trt_api")
ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
# Device memory of the tests' CUDA stand-ins: [start, end) ranges they register, so the
# stand-in can tell a device pointer from host memory (R5).
DEVICE_RANGES = []
# What the tests' CUDA stand-ins hold at a device address (address -> NumPy array), so the
# stand-in can read calibration batches as TensorRT does (R8). Tests that register clear it.
DEVICE_MEMORY = {}
# TensorRT's built-in plugins (libnvinfer_plugin; a few of them) that init_libnvinfer_plugins registers.
BUILTIN_PLUGINS = ("EfficientNMS_TRT", "BatchedNMSDynamic_TRT", "BatchedNMS_TRT", "NMSDynamic_TRT", "ROIAlign_TRT")


def is_device_pointer(ptr: int) -> bool:
    return any(a <= int(ptr) < b for a, b in DEVICE_RANGES)


def synchronize_current(stream=0) -> None:
    """``tegra_ai.cuda.driver.stream_synchronize`` for the tests' CUDA stand-ins: tells the
    stand-in module ``compat.load()`` returns that ``stream`` was synchronized (R3)."""
    from tegra_ai.trt import compat

    trt = compat.load()[0]
    trt._fake.synchronize(int(stream if not hasattr(stream, "__int__") else int(stream)))


def engine_bytes(release: str, io, profiles=(), plugins=(), flags=()) -> bytes:
    """Serialized stand-in engine: ``io`` = [[name, "INPUT"|"OUTPUT", shape, kind, dtype]] with
    kind None, "shape" (shape-tensor input), "dds" (data-dependent output) or "from:NAME"
    (output whose shape is the values of shape tensor NAME)."""
    desc = {"release": release, "flags": sorted(flags), "io": [list(t) for t in io],
            "profiles": [{n: [list(x) for x in v] for n, v in p.items()} for p in profiles],
            "device": "", "plugins": list(plugins)}
    return ENGINE_MAGIC + json.dumps(desc, sort_keys=True).encode()
ENCODE = object()  # build_result default: the builder serializes a real (fake) engine


@functools.lru_cache(maxsize=None)
def load_surface(release: str) -> dict:
    with open(os.path.join(SURFACE_DIR, f"surface-{release}.json")) as f:
        return json.load(f)


def surface_releases() -> list:
    names = [f[len("surface-"):-len(".json")] for f in os.listdir(SURFACE_DIR) if f.startswith("surface-")]
    return sorted(names, key=lambda n: tuple(int(x) for x in n.split(".")))


def surface_for(version) -> str:
    """The surface nearest to ``version`` (same major; nearest minor, the older one on ties)."""
    v = tuple(int(x) for x in str(version).split(".")[:2]) if not isinstance(version, tuple) else tuple(version[:2])
    same = [r for r in surface_releases() if int(r.split(".")[0]) == v[0]]
    if not same:
        raise LookupError(f"no API surface for TensorRT {version}")
    return min(same, key=lambda r: (abs(int(r.split(".")[1]) - v[1]), int(r.split(".")[1])))


# --------------------------------------------------------------------------- signatures

def check_call(where: str, sigs, args: tuple, kwargs: dict) -> None:
    """Raise TypeError unless (args, kwargs) fits one of the pybind11 overloads ``sigs``."""
    for sig in sigs:
        names = sig.get("args")
        if names is None:
            n = sig.get("nargs")
            if not kwargs and (n is None or len(args) == n):
                return
            continue
        if len(args) > len(names):
            continue
        given = set(names[:len(args)])
        if any(k not in names or k in given for k in kwargs):
            continue
        required = [a for a in names if a not in sig.get("defaults", {})]
        if all(a in given or a in kwargs for a in required):
            return
    shown = "; ".join("(" + ", ".join(s["args"]) + ")" if s.get("args") is not None else f"({s.get('nargs')} positional)"
                      for s in sigs)
    raise TypeError(f"{where}(): incompatible function arguments. The following argument types are supported: {shown}; "
                    f"invoked with args={args!r} kwargs={sorted(kwargs)!r}")


# --------------------------------------------------------------------------- enums

class EnumValue:
    __slots__ = ("_enum", "name", "value")

    def __init__(self, enum_name, name, value, arithmetic):
        self._enum, self.name, self.value = (enum_name, arithmetic), name, value

    def __int__(self):
        if self.value is None:
            raise NotImplementedError(f"fake_trt: the sources give no value for {self._enum[0]}.{self.name}")
        return self.value

    __index__ = __int__

    def __eq__(self, other):
        if isinstance(other, EnumValue):
            return self._enum == other._enum and self.value == other.value
        if self._enum[1] and isinstance(other, int) and not isinstance(other, bool):
            return self.value == other
        return False

    def __ne__(self, other):
        return not self == other

    def __lt__(self, other):  # pybind11 orders py::arithmetic() enums only
        if not self._enum[1]:
            return NotImplemented
        if isinstance(other, EnumValue) and self._enum == other._enum:
            return self.value < other.value
        if isinstance(other, int):
            return self.value < other
        return NotImplemented

    def __hash__(self):
        return hash((self._enum[0], self.value))

    def __str__(self):
        return f"{self._enum[0].split('.')[-1]}.{self.name}"

    def __repr__(self):
        return f"<{self}: {self.value}>"


def make_enum(name: str, spec: dict):
    members = {m: EnumValue(name, m, v, spec.get("arithmetic", False)) for m, v in spec["members"].items()}

    def _new(cls, value):
        for m in members.values():
            if m.value == int(value):
                return m
        raise ValueError(f"{value} is not a valid {name}")
    return type(name.split(".")[-1], (), dict(members, __members__=dict(members), __new__=_new)), members


# --------------------------------------------------------------------------- classes

class _Meta(type):
    def __call__(cls, *args, **kwargs):
        obj = cls.__new__(cls)
        cls.__init__(obj, *args, **kwargs)
        if not obj.__dict__.get("_inited"):
            raise TypeError(f"{cls.__name__}.__init__() must be called when overriding __init__")
        return obj


class StrictObject(metaclass=_Meta):
    _trt_name = "object"
    _methods: dict = {}
    _props: dict = {}
    _generated: bool = True
    _fake = None

    def __init__(self, *args, **kwargs):
        sigs = self._methods.get("__init__")
        if sigs is None:
            raise TypeError(f"tensorrt.{self._trt_name}: No constructor defined!")
        check_call(f"{self._trt_name}.__init__", sigs, args, kwargs)
        object.__setattr__(self, "_inited", True)
        object.__setattr__(self, "_values", {})
        self._setup(*args, **kwargs)

    def _setup(self, *args, **kwargs):
        pass

    @classmethod
    def _new(cls, *args, **kwargs):
        """Construct internally (what TensorRT returns from a factory), no constructor check."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "_inited", True)
        object.__setattr__(obj, "_values", {})
        obj._setup(*args, **kwargs)
        return obj

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(self)
        prop = cls._props.get(name)
        if prop is not None:
            if not prop.get("readable", True):
                raise AttributeError(f"unreadable attribute {name!r} of tensorrt.{cls._trt_name}")
            values = self.__dict__.get("_values", {})
            if name in values:
                return values[name]
            raise NotImplementedError(f"fake_trt does not model tensorrt.{cls._trt_name}.{name}")
        if name in cls._methods:
            def unmodelled(*args, **kwargs):
                check_call(f"{cls._trt_name}.{name}", cls._methods[name], args, kwargs)
                raise NotImplementedError(f"fake_trt does not model tensorrt.{cls._trt_name}.{name}()")
            return unmodelled
        raise AttributeError(f"'tensorrt.{cls._trt_name}' object has no attribute '{name}'")

    def __setattr__(self, name, value):
        cls = type(self)
        prop = cls._props.get(name)
        if prop is not None:
            if not prop.get("writable"):
                raise AttributeError(f"can't set attribute {name!r} of tensorrt.{cls._trt_name} (read-only property)")
            hook = getattr(cls, f"_set_{name}", None)
            if hook is not None:
                value = hook(self, value)
            self.__dict__["_values"][name] = value
            if self._fake is not None:
                self._fake.calls.append(("set", cls._trt_name, name))
            return
        if not cls.__dict__.get("_generated", False) and not name.startswith("_") and name not in cls._methods:
            object.__setattr__(self, name, value)  # a Python subclass has a __dict__
            return
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"'tensorrt.{cls._trt_name}' object has no attribute '{name}'")


def _wrap(trt_name, name, fn, sigs, fake):
    @functools.wraps(fn)
    def method(self, *args, **kwargs):
        check_call(f"{trt_name}.{name}", sigs, args, kwargs)
        if fake is not None:
            fake.calls.append((trt_name, name))
        return fn(self, *args, **kwargs)
    return method


def _merged(surface: dict, name: str, key: str) -> dict:
    spec = surface["classes"][name]
    out = {}
    for base in spec.get("bases", []):
        if base in surface["classes"]:
            out.update(_merged(surface, base, key))
    out.update(spec.get(key, {}))
    return out


def build_classes(surface: dict, impls: dict, fake) -> dict:
    """One Python class per bound class, with the behaviour in ``impls`` where modelled."""
    made = {}

    def make(name):
        if name in made:
            return made[name]
        spec = surface["classes"][name]
        bases = [make(b) for b in spec.get("bases", []) if b in surface["classes"]]
        bases = tuple(b for b in bases if not any(o is not b and issubclass(o, b) for o in bases)) or (StrictObject,)
        methods = _merged(surface, name, "methods")
        methods.pop("__init__", None)  # pybind11 constructors are not inherited
        if "__init__" in spec.get("methods", {}):
            methods["__init__"] = spec["methods"]["__init__"]
        props = _merged(surface, name, "properties")
        ns = {"_trt_name": name, "_methods": methods, "_props": props, "_generated": True, "_fake": fake,
              "__qualname__": name}
        impl = impls.get(name)
        if impl is not None:
            for attr, value in vars(impl).items():
                if attr.startswith("_") and attr != "__init__":
                    if attr not in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
                        ns[attr] = value
                elif attr in methods and callable(value) and attr != "__init__":
                    ns[attr] = _wrap(name, attr, value, methods[attr], fake)
                # a modelled method the release does not bind is left out: AttributeError
        cls = _Meta(name, bases, ns)
        made[name] = cls
        return cls

    for name in surface["classes"]:
        make(name)
    return made


# --------------------------------------------------------------------------- behaviour

def _dims(shape):
    return tuple(int(d) for d in shape)


_NP_TYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "INT8": "int8",
             "UINT8": "uint8", "BOOL": "bool", "BF16": "uint16"}


def _profile_errors(network, label, p) -> list:
    """What TensorRT reports at build time of profile ``p`` (an optimization profile or the
    calibration profile) against ``network``."""
    errors = []
    shape_inputs = [t for t in network._inputs if t._values["is_shape_tensor"]]
    dynamic = [t for t in network._inputs if any(int(d) < 0 for d in t.shape)]
    # NvInferRuntime.h IOptimizationProfile::setShapeValues (8.5 l.1182-1184, 10.3 l.2210-2212,
    # 10.13.3 l.2849-2851 (V2), 11.1 l.2684-2686): "This function must be called three times
    # for every input tensor t that is a shape tensor ... This function must not be called for
    # any input tensor that is not a shape tensor"; "it must be true that minVals[i] <=
    # optVals[i] <= maxVals[i]"; nbValues is "1 if the tensor rank is 0, or dims.d[0]" (the
    # volume from 10.0: "For multidimensional tensors, the array is in row-major order").
    # "a full validation can only be performed at engine build time": here.
    for t in shape_inputs:
        if t.name not in p._shape_values:
            errors.append(f"{label}: shape tensor input {t.name} has no shape values "
                          "(IOptimizationProfile::setShapeValues)")
            continue
        mn, op, mx = p._shape_values[t.name]
        volume = 1
        for d in t.shape:
            volume *= int(d)
        if len(op) != volume:
            errors.append(f"{label}: {len(op)} shape values for {t.name}, which has {volume} element(s)")
        elif not all(a <= b <= c for a, b, c in zip(mn, op, mx)):
            errors.append(f"{label}: shape values of {t.name} need min <= opt <= max")
    for name in p._shape_values:
        t = next((x for x in network._inputs if x.name == name), None)
        if t is None or not t._values["is_shape_tensor"]:
            errors.append(f"{label}: setShapeValues called for {name}, which is not a shape tensor input of "
                          "the network")
    for t in dynamic:
        if t.name not in p._shapes:
            errors.append(f"{label} does not define the shape of input {t.name}")
    for name, (mn, _op, mx) in p._shapes.items():
        t = next((x for x in network._inputs if x.name == name), None)
        if t is None:
            errors.append(f"{label}: {name} is not an input of the network")
        elif len(mn) != len(t.shape) or any(int(d) >= 0 and (a != d or b != d) for d, a, b in zip(t.shape, mn, mx)):
            errors.append(f"{label}: shape of {name} does not fit dimensions {list(t.shape)}")
    return errors


def _impls(trt, fake, surface, inputs, outputs, build_result, errors_on_build, dla_cores, parse_errors,
           plugin_layers=()):
    release = surface["release"]
    S = trt.ILogger.Severity

    def log(logger, severity, msg):
        fake.log.append((severity, msg))
        if logger is not None:
            logger.log(severity, msg)

    class ILogger:
        def _setup(self, *a):
            pass

    class Logger:
        def _setup(self, min_severity=None):
            self._values["min_severity"] = min_severity

        def log(self, severity, msg):
            fake.log.append((severity, msg))

    class ITensor:
        def _setup(self, name, shape, dtype, is_shape_tensor=False):
            self._values.update(name=name, shape=tuple(shape), dtype=dtype, is_shape_tensor=bool(is_shape_tensor))

    class INetworkDefinition:
        def _setup(self, flags):
            self._flags = flags
            # an input may name its DataType third: ("input", (1, 3, 8, 8), "HALF"), and fourth
            # "shape" for a shape-tensor input: ("k", (), "INT32", "shape")
            self._inputs = [trt.ITensor._new(i[0], i[1], getattr(trt.DataType, i[2] if len(i) > 2 else "FLOAT"),
                                             len(i) > 3 and i[3] == "shape")
                            for i in inputs]
            self._outputs = [trt.ITensor._new(n, s, trt.DataType.FLOAT) for n, s in outputs]
            self._values.update(num_inputs=len(self._inputs), num_outputs=len(self._outputs))

        def get_input(self, index):
            return self._inputs[index] if 0 <= index < len(self._inputs) else None

        def get_output(self, index):
            return self._outputs[index] if 0 <= index < len(self._outputs) else None

    class ParserError:
        def _setup(self, text, node_name, node_index):
            self._text, self._node_name, self._node_index = text, node_name, node_index

        def desc(self):
            return self._text

        def node(self):
            return self._node_index

        def node_name(self):
            return self._node_name

    class OnnxParser:
        def _setup(self, network, logger):
            self._network, self._logger = network, logger
            self._values["num_errors"] = len(parse_errors)

        def parse_from_file(self, model):
            fake.calls.append(("parse", model))
            with open(model, "rb") as f:  # what was parsed, for tests (the builder may parse a temporary copy)
                fake.parsed_models.append(f.read())
            for plugin in plugin_layers:
                # onnx-tensorrt's fallback plugin importer: "Plugin not found, are the plugin name,
                # version, and namespace correct?" when the creator is not registered (R1).
                if plugin not in fake.creators:
                    log(self._logger, S.ERROR, f"getPluginCreator could not find plugin: {plugin} version: 1")
                    fake.parse_plugin_missing = plugin
                    return False
            for text, *_node in parse_errors:
                log(self._logger, S.ERROR, text)
            return not parse_errors

        def get_error(self, index):
            text, node, *node_index = parse_errors[index]
            return trt.ParserError._new(text, node, node_index[0] if node_index else -1)

    class IOptimizationProfile:
        def _setup(self):
            self._shapes = {}
            self._shape_values = {}

        def set_shape(self, input, min, opt, max):
            mn, op, mx = _dims(min), _dims(opt), _dims(max)
            # As IOptimizationProfile::setDimensions (min, then opt, then max) reports it.
            if any(d < 0 for d in mn):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            if len(op) != len(mn) or any(o < m for o, m in zip(op, mn)):
                raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
            if len(mx) != len(op) or any(x < o for x, o in zip(mx, op)):
                raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
            self._shapes[input] = (mn, op, mx)

        def get_shape(self, input):
            return list(self._shapes.get(input, ()))

        def set_shape_input(self, input, min, opt, max):
            # pyCore.cpp opt_profile_set_shape_input: std::vector<int32_t> to setShapeValues up to
            # 10.10 (release/8.5, release/10.3 l.58-67), std::vector<int64_t> to setShapeValuesV2 from
            # 10.11 (release/10.13.3, release/10.16, release/11.1 l.59-67): pybind11 refuses a value
            # that does not fit (TypeError); a false return raises RuntimeError with these messages.
            bits = 64 if tuple(int(x) for x in release.split(".")) >= (10, 11) else 32
            sets = []
            for vals in (min, opt, max):
                vals = list(vals)
                if not all(isinstance(v, int) and not isinstance(v, bool) and -(1 << (bits - 1)) <= v < (1 << (bits - 1))
                           for v in vals):
                    raise TypeError("set_shape_input(): incompatible function arguments")
                sets.append(tuple(vals))
            # NvInferRuntime.h setShapeValues (8.5 l.1188-1189, 10.3 l.2214-2215): "the same nbValues must be
            # supplied" each time; nbValues >= 1 (l.1209: "the number of shape tensor elements (>= 1)").
            for which, vals in zip(("min", "opt", "max"), sets):
                if not vals or len(vals) != len(sets[0]):
                    raise RuntimeError(f"{which} input provided for shape tensor is inconsistent with other inputs.")
            self._shape_values[input] = tuple(sets)

        def get_shape_input(self, input):
            return [list(v) for v in self._shape_values.get(input, ())]

    class ITimingCache:
        def _setup(self, data=b""):
            self._data = bytes(data)

        def serialize(self):
            return b"TIMING"

    class IBuilderConfig:
        def _setup(self):
            self._flags, self._profiles, self._pools = [], [], {}
            self._calibration_profile = None
            self._timing_cache = None
            if "profiling_verbosity" in type(self)._props:
                self._values["profiling_verbosity"] = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            if "default_device_type" in type(self)._props:
                self._values["default_device_type"] = trt.DeviceType.GPU
            if "progress_monitor" in type(self)._props:
                self._values["progress_monitor"] = None
            if "int8_calibrator" in type(self)._props:
                self._values["int8_calibrator"] = None

        def add_optimization_profile(self, profile):
            if not isinstance(profile, trt.IOptimizationProfile):
                raise TypeError("add_optimization_profile(): incompatible function arguments")
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_flag(self, flag):
            if not isinstance(flag, EnumValue) or flag._enum[0] != "BuilderFlag":
                raise TypeError("set_flag(): incompatible function arguments (expects tensorrt.BuilderFlag)")
            self._flags.append(flag)

        def set_memory_pool_limit(self, pool, pool_size):
            if not isinstance(pool, EnumValue) or pool._enum[0] != "MemoryPoolType":
                raise TypeError("set_memory_pool_limit(): incompatible function arguments (expects tensorrt.MemoryPoolType)")
            self._pools[pool] = int(pool_size)

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(serialized_timing_cache)
            fake.calls.append(("create_timing_cache", data))
            if data and data not in fake.valid_timing_caches:
                return None  # IBuilderConfig::createTimingCache returns nullptr on data it cannot read
            return trt.ITimingCache._new(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self._timing_cache = cache
            return True

        def set_calibration_profile(self, profile):
            # NvInfer.h setCalibrationProfile (8.5 l.9056-9058, 10.3 l.9123-9126, 10.13.3 l.9869-9872): "must
            # satisfy profile->isValid() == true or be nullptr"; returns "True if the calibration profile was
            # set correctly". This stand-in's profiles refuse inconsistent dims when they are set (set_shape),
            # so every profile object is valid here; the network-dependent checks run at build time (R8).
            if profile is not None and not isinstance(profile, trt.IOptimizationProfile):
                raise TypeError("set_calibration_profile(): incompatible function arguments")
            self._calibration_profile = profile
            return True

        def _set_int8_calibrator(self, value):
            if value is not None and not isinstance(value, trt.IInt8Calibrator):
                raise TypeError("int8_calibrator: expects a tensorrt.IInt8Calibrator")
            return value

        def _set_progress_monitor(self, value):
            if value is not None and not isinstance(value, trt.IProgressMonitor):
                raise TypeError("progress_monitor: expects a tensorrt.IProgressMonitor")
            return value

        def _set_builder_optimization_level(self, value):
            if not isinstance(value, int) or not 0 <= value <= 5:
                raise TypeError("builder_optimization_level: expects an int in 0..5")
            return value

    class Builder:
        def _setup(self, logger):
            self._logger = logger
            fake.builder = self
            self._values.update(num_DLA_cores=dla_cores, platform_has_fast_fp16=True, platform_has_fast_int8=True,
                                platform_has_tf32=True, logger=logger)

        def create_network(self, flags=0):
            flags = int(flags)
            defined = {int(v) for v in trt.NetworkDefinitionCreationFlag.__members__.values()}
            if any(flags & (1 << bit) for bit in range(32) if bit not in defined):
                log(self._logger, S.ERROR, f"Invalid network creation flags {flags}")
                return None
            fake.network = trt.INetworkDefinition._new(flags)
            return fake.network

        def create_builder_config(self):
            fake.config = trt.IBuilderConfig._new()
            return fake.config

        def create_optimization_profile(self):
            return trt.IOptimizationProfile._new()

        def get_plugin_registry(self):
            return fake.registry

        def build_serialized_network(self, network, config):
            fake.calls.append("build")
            dynamic = [t for t in network._inputs if any(int(d) < 0 for d in t.shape)]
            shape_inputs = [t for t in network._inputs if t._values["is_shape_tensor"]]
            profiles = [p._shapes for p in config._profiles]
            errors = []
            if (dynamic or shape_inputs) and not profiles:
                errors.append("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            for i, p in enumerate(config._profiles):
                errors += _profile_errors(network, f"Optimization profile {i}", p)
            for error in errors:
                log(self._logger, S.ERROR, error)
            if errors:
                return None
            monitor = config._values.get("progress_monitor")
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                for step in range(2):
                    if monitor.step_complete("Building engine", step) is False:
                        monitor.phase_finish("Building engine")
                        log(self._logger, S.ERROR, "Build cancelled by the progress monitor")
                        return None
                monitor.phase_finish("Building engine")
            calibrator = config._values.get("int8_calibrator")
            int8 = any(f.name == "INT8" for f in config._flags)
            if calibrator is not None and int8:
                errors = self._calibrate(network, config, calibrator)
                for error in errors:
                    log(self._logger, S.ERROR, error)
                if errors:
                    return None
            for e in errors_on_build:
                log(self._logger, S.ERROR, e)
            if build_result is not ENCODE:
                return build_result
            desc = {"release": release, "flags": sorted(f.name for f in config._flags),
                    "io": [[t.name, "INPUT", list(t.shape)] + (["shape", t.dtype.name] if t._values["is_shape_tensor"]
                                                                  else []) for t in network._inputs]
                    + [[t.name, "OUTPUT", list(t.shape)] for t in network._outputs],
                    "profiles": [{n: [list(s) for s in v] for n, v in p.items()} for p in profiles],
                    "shape_values": [{n: [list(s) for s in v] for n, v in p._shape_values.items()}
                                     for p in config._profiles],
                    "device": str(config._values.get("default_device_type", "")), "plugins": list(plugin_layers)}
            return ENGINE_MAGIC + json.dumps(desc, sort_keys=True).encode()

        def _calibrate(self, network, config, calibrator):
            """R8: calibrate as TensorRT <= 10.x does; returns the errors TensorRT would log."""
            fake.calls.append("calibrate")
            cache = calibrator.read_calibration_cache()
            if cache:
                fake.calibration.append(("cache", bytes(cache)))
                return []
            calibrator.get_batch_size()
            inputs = network._inputs
            runtime_dims = [t.name for t in inputs if t._values["is_shape_tensor"] or any(int(d) < 0 for d in t.shape)]
            profile = config._calibration_profile
            if profile is None:
                if runtime_dims:
                    # NvInfer.h setCalibrationProfile (8.5 l.9053-9054, 10.3 l.9120-9121, 10.13.3 l.9866-9867):
                    # "Calibration optimization profile must be set if int8 calibration is used to set scales
                    # for a network with runtime dimensions".
                    return [f"Calibration profile must be set for a network with runtime dimensions "
                            f"({', '.join(runtime_dims)})"]
                shapes = {t.name: _dims(t.shape) for t in inputs}
            else:
                # The calibration profile is an IOptimizationProfile: the same rules (setShapeValues for
                # every shape tensor and for nothing else, dims that fit the network) as _profile_errors.
                errors = _profile_errors(network, "Calibration profile", profile)
                if errors:
                    return errors
                # "MIN and MAX values will be overwritten by kOPT" (8.5 l.9057, 10.3 l.9124, 10.13.3 l.9870)
                shapes = {t.name: (profile._shape_values[t.name][1] if t._values["is_shape_tensor"]
                                   else profile._shapes[t.name][1] if t.name in profile._shapes else _dims(t.shape))
                          for t in inputs}
            import numpy as np

            fake.calibration_shapes = shapes
            names = [t.name for t in inputs]
            while True:
                pointers = calibrator.get_batch(names)
                if not pointers:
                    break
                if len(pointers) != len(names) or not all(isinstance(p, int) for p in pointers):
                    raise RuntimeError("get_batch must return one device pointer (int) per input")
                fake.calibration.append(("batch", len(pointers)))
                read = {}
                for t, ptr in zip(inputs, pointers):
                    held = DEVICE_MEMORY.get(int(ptr))
                    if held is None:
                        continue   # memory the test did not register: not read
                    shape = shapes[t.name]
                    if t._values["is_shape_tensor"]:
                        shape = tuple(int(d) for d in t.shape)  # the values live in a tensor of its own shape
                    dtype = _NP_TYPES[t.dtype.name]
                    count = 1
                    for d in shape:
                        count *= int(d)
                    raw = memoryview(np.ascontiguousarray(held)).cast("B")
                    need = count * np.dtype(dtype).itemsize
                    if len(raw) < need:
                        # TensorRT reads the calibration shape's bytes from the pointer: past the end here.
                        return [f"Calibration batch {len(fake.calibration_reads) + 1}: {t.name} holds {len(raw)} "
                                f"bytes, calibration reads {need} (shape {list(shape)})"]
                    arr = np.frombuffer(raw[:need], dtype=dtype).reshape(shape).copy()
                    if t._values["is_shape_tensor"] and tuple(arr.ravel().tolist()) != tuple(shapes[t.name]):
                        # The calibration engine's one profile has min = opt = max = these values; NvInferRuntime.h
                        # IOptimizationProfile (8.5 l.1112-1128, 10.3 l.2152-2156): "A runtime error will be raised
                        # if the input tensor dimensions fall outside the valid range for this profile. Likewise,
                        # users provide minimum, optimum, and maximum values for all shape tensor input values."
                        return [f"Calibration batch {len(fake.calibration_reads) + 1}: shape tensor {t.name} holds "
                                f"{arr.ravel().tolist()}, outside the calibration profile's {list(shapes[t.name])}"]
                    read[t.name] = arr
                fake.calibration_reads.append(read)
            calibrator.write_calibration_cache(b"CALIBRATION")
            return []

    class IPluginRegistry:
        def _setup(self):
            self._libraries = []

        def load_library(self, plugin_path):
            fake.calls.append(("load_library", plugin_path))
            if not os.path.exists(plugin_path) or fake.plugin_load_fails:
                return None
            if plugin_path in self._libraries:
                # a second load registers the creators again: TensorRT logs "Plugin creator already
                # registered" for each; we load every library once per process
                fake.double_loads.append(plugin_path)
            self._libraries.append(plugin_path)
            fake.creators.update(fake.library_creators.get(os.path.basename(plugin_path), ()))
            return object()

    class Runtime:
        def _setup(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            if not data.startswith(ENGINE_MAGIC):
                log(self._logger, S.ERROR, "Engine deserialization failed: invalid magic")
                return None
            desc = json.loads(data[len(ENGINE_MAGIC):])
            if desc["release"] != release:
                log(self._logger, S.ERROR, "The engine plan file is not compatible with this version of TensorRT")
                return None
            for plugin in desc.get("plugins", []):
                # R1: IPluginRegistry "is used to find plugin implementations during engine
                # deserialization" (NvInferRuntimeCommon.h 8.5 l.1219, 10.3 l.42); initLibNvInferPlugins
                # "should be called once before accessing the Plugin Registry" (NvInferPlugin.h 8.5
                # l.27-33, 10.3 l.32-38). A plugin layer is deserialized through its registered creator. 8.x logs
                # "getPluginCreator could not find plugin: NAME version: 1", 10.x "IPluginRegistry::
                # getPluginCreator: Error Code 4: API Usage Error (Cannot find plugin: NAME, version: 1,
                # namespace:.)", then "Cannot deserialize plugin since corresponding IPluginCreator not
                # found in Plugin Registry" and deserializeCudaEngine returns nullptr (users' logs of
                # both releases, e.g. github.com/NVIDIA/TensorRT/issues/263).
                if plugin not in fake.creators:
                    if int(release.split(".")[0]) >= 10:
                        log(self._logger, S.ERROR, "IPluginRegistry::getPluginCreator: Error Code 4: API Usage Error "
                                                   f"(Cannot find plugin: {plugin}, version: 1, namespace:.)")
                    else:
                        log(self._logger, S.ERROR, f"getPluginCreator could not find plugin: {plugin} version: 1")
                    log(self._logger, S.ERROR, "Serialization (Serialization assertion creator failed.Cannot "
                                               "deserialize plugin since corresponding IPluginCreator not found in "
                                               "Plugin Registry)")
                    return None
            return trt.ICudaEngine._new(desc)

    class ICudaEngine:
        def _setup(self, desc):
            self._desc = desc
            self._io = [(t[0], t[1], tuple(t[2])) for t in desc["io"]]
            self._kind = {t[0]: (t[3] if len(t) > 3 else None) for t in desc["io"]}
            self._dtype = {t[0]: (t[4] if len(t) > 4 else "FLOAT") for t in desc["io"]}
            self._values.update(num_io_tensors=len(self._io), num_optimization_profiles=max(1, len(desc["profiles"])),
                                num_layers=1, name="fake")
            self._contexts = weakref.WeakSet()
            self._dynamic = any(m == "INPUT" and any(d < 0 for d in s) for _n, m, s in self._io)

        def _find(self, name):
            for t in self._io:
                if t[0] == name:
                    return t
            return None

        def get_tensor_name(self, index):
            return self._io[index][0] if 0 <= index < len(self._io) else None

        def get_tensor_mode(self, name):
            t = self._find(name)
            return trt.TensorIOMode.NONE if t is None else getattr(trt.TensorIOMode, t[1])

        def get_tensor_shape(self, name):
            t = self._find(name)
            return trt.Dims._new(t[2] if t else ())

        def get_tensor_dtype(self, name):
            return getattr(trt.DataType, self._dtype.get(name, "FLOAT"))

        def get_tensor_location(self, name):
            # NvInferRuntime.h 8.5 l.1640: "shape tensors inputs are typically required to be on the CPU"
            return trt.TensorLocation.HOST if self._kind.get(name) == "shape" else trt.TensorLocation.DEVICE

        def is_shape_inference_io(self, name):
            return self._kind.get(name) == "shape"

        def get_tensor_format_desc(self, name, profile_index=0):
            return "Row major linear FP32 format (kLINEAR)"

        def get_tensor_profile_shape(self, name, profile_index):
            profiles = self._desc["profiles"]
            if not 0 <= profile_index < len(profiles) or name not in profiles[profile_index]:
                raise RuntimeError(f"no profile shape for {name} in profile {profile_index}")
            return [trt.Dims._new(s) for s in profiles[profile_index][name]]

        def get_tensor_profile_values(self, name, profile_index):
            values = self._desc.get("shape_values", [])
            if not 0 <= profile_index < len(values) or name not in values[profile_index]:
                raise RuntimeError(f"no profile values for {name} in profile {profile_index}")
            return [list(v) for v in values[profile_index][name]]

        def create_execution_context(self, *args, **kwargs):
            # R3: 8.5 (NvInferRuntime.h l.2845-2849): "For the first execution context that is created for
            # an engine, setOptimizationProfile(0) is called implicitly"; 10.x (10.3 l.3891-3892): "The
            # newly created execution context will be assigned optimization profile 0."
            first = not self._created
            self._created = True
            ctx = trt.IExecutionContext._new(self, 0 if first or int(release.split(".")[0]) >= 10 else None)
            self._contexts.add(ctx)
            fake.live_contexts.add(ctx)
            return ctx

        _created = False

        def create_engine_inspector(self):
            return trt.EngineInspector._new(self)

        def get_engine_stat(self, stat):
            if stat == trt.EngineStat.TOTAL_WEIGHTS_SIZE:
                return 4096
            return 0

    class EngineInspector:
        def _setup(self, engine):
            self._engine = engine

        def get_engine_information(self, format):
            precision = "FP16" if "FP16" in self._engine._desc["flags"] else "FP32"
            return json.dumps({"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "TacticName": "fake",
                                           "Outputs": [{"Format/Datatype": f"Row major linear {precision}"}]}],
                               "Bindings": [t[0] for t in self._engine._io]})

    class IExecutionContext:
        def _setup(self, engine, profile=0):
            self._engine = engine
            self._shapes, self._addresses, self._profile = {}, {}, profile
            self._allocators, self._pending_stream = {}, None

        def set_optimization_profile_async(self, profile_index, stream_handle):
            # R3: NvInferRuntime.h IExecutionContext::setOptimizationProfileAsync (8.5 l.2857, 10.3 l.3907,
            # 10.13 l.4577, 11.1 l.4279): "\\return true if the call succeeded, else false (e.g. input out
            # of range)".
            if not 0 <= profile_index < self._engine._values["num_optimization_profiles"]:
                log(None, S.ERROR, f"profileIndex {profile_index} is out of range")
                return False
            # R2: IExecutionContext class comment (8.5 l.2241, 10.3 l.3562, 10.13 l.4232, 11.1 l.3953):
            # "If the engine supports dynamic shapes, each execution context in concurrent use must use a
            # separate optimization profile." TensorRT refuses a profile another live context holds:
            # "Profile N has been chosen by another IExecutionContext. Use another profileIndex or destroy
            # the IExecutionContext that use this profile."
            if self._engine._dynamic and any(c is not self and c._profile == profile_index
                                             for c in list(self._engine._contexts)):
                log(None, S.ERROR, f"Profile {profile_index} has been chosen by another IExecutionContext. Use "
                                   "another profileIndex or destroy the IExecutionContext that use this profile.")
                return False
            self._profile = profile_index
            self._pending_stream = int(stream_handle)   # R3: copies may be pending on this stream
            fake.calls.append(("select_profile", profile_index, int(stream_handle)))
            return True

        def _profile_shapes(self, name):
            prof = self._engine._desc["profiles"]
            if not prof or self._profile is None:
                return None
            return prof[self._profile].get(name)

        def set_input_shape(self, name, shape):
            t = self._engine._find(name)
            shape = _dims(shape)
            if t is None or t[1] != "INPUT" or len(shape) != len(t[2]):
                return False
            if self._engine._dynamic and self._profile is None:
                # R3: on 8.5 only the first context has a profile; another must select one first
                # ("setOptimizationProfileAsync() must be called before calling setBindingDimensions()")
                log(None, S.ERROR, "setInputShape: no optimization profile selected for this context")
                return False
            ranges = self._profile_shapes(name)
            if ranges is not None:
                mn, _op, mx = ranges
                if any(s < a or s > b for s, a, b in zip(shape, mn, mx)):
                    return False
            elif self._engine._kind.get(name) != "shape" and any(
                    d >= 0 and d != s for d, s in zip(t[2], shape)):
                return False
            self._shapes[name] = shape
            return True

        def _shape_values(self, name):
            """R5: the values of a shape-tensor input, read from its host address."""
            import ctypes

            import numpy as np

            addr = self._addresses.get(name)
            if not addr or is_device_pointer(addr):
                return None
            dims = self._shapes.get(name, self._engine._find(name)[2])
            n = int(np.prod(dims)) if dims else 1
            dtype = np.int32 if self._engine._dtype.get(name, "INT32") == "INT32" else np.int64
            raw = (ctypes.c_uint8 * (n * np.dtype(dtype).itemsize)).from_address(int(addr))
            return tuple(int(v) for v in np.frombuffer(raw, dtype=dtype, count=n))

        def get_tensor_shape(self, name):
            t = self._engine._find(name)
            if t is None:
                return trt.Dims._new(())
            if t[1] == "INPUT":
                return trt.Dims._new(self._shapes.get(name, t[2]))
            kind = self._engine._kind.get(name)
            if kind == "dds":
                # R4: NvInferRuntime.h (8.5 l.2944): a data-dependent output "reports a -1 for any
                # dimension ... after all input shapes have been set"
                return trt.Dims._new(t[2])
            if kind and kind.startswith("from:"):
                values = self._shape_values(kind[5:])
                return trt.Dims._new(values if values is not None else tuple(-1 for _ in t[2]))
            batch = next((v for n, v in self._shapes.items() if self._engine._kind.get(n) != "shape"), (1,))[0]
            return trt.Dims._new(tuple(batch if d < 0 else d for d in t[2]))

        def set_tensor_address(self, name, memory):
            if self._engine._find(name) is None:
                return False
            self._addresses[name] = int(memory)
            return True

        def set_output_allocator(self, name, output_allocator):
            t = self._engine._find(name)
            if t is None or t[1] != "OUTPUT":
                return False
            if output_allocator is not None and not isinstance(output_allocator, trt.IOutputAllocator):
                raise TypeError("set_output_allocator(): expects a tensorrt.IOutputAllocator")
            self._allocators[name] = output_allocator
            return True

        def get_output_allocator(self, name):
            return self._allocators.get(name)

        def _fail(self, message):
            log(None, S.ERROR, f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error ({message})")
            return False

        def execute_async_v3(self, stream_handle):
            stream = int(stream_handle)
            fake.calls.append(("execute", stream))
            engine = self._engine
            if engine._dynamic:
                if self._profile is None:
                    return self._fail("no optimization profile selected for this execution context")
                # R2: each context in concurrent use needs its own profile.
                if any(c is not self and c._profile == self._profile for c in list(engine._contexts)):
                    return self._fail(f"optimization profile {self._profile} is used by another execution context "
                                      "of this engine (each context in concurrent use must use a separate "
                                      "optimization profile)")
            # R3: "Not synchronizing the stream used at enqueue with the stream used to set optimization
            # profile asynchronously using this API will result in undefined behavior" (8.5 l.2853,
            # 10.3 l.3903, 10.13 l.4573, 11.1 l.4275).
            if self._pending_stream is not None and self._pending_stream != stream:
                return self._fail(f"profile selected on stream {self._pending_stream}, which was not synchronized "
                                  f"before enqueueing on stream {stream}")
            for name, mode, dims in engine._io:
                kind = engine._kind.get(name)
                addr = self._addresses.get(name)
                if mode == "INPUT":
                    if not addr:
                        return self._fail(f"input {name} has no address")
                    if kind == "shape":
                        # R5: NvInferRuntime.h 8.5 l.2939-2940: "If the TensorLocation of the tensor is kHOST,
                        # the pointer must point to a host buffer of sufficient size. For shape tensors, the
                        # only supported data type is int32_t." (10.x: the engine's type, int32 or int64)
                        if is_device_pointer(addr):
                            return self._fail(f"shape tensor {name} must be in host memory, got a device address")
                    continue
                if kind == "dds":
                    # R4: "each output must have a non-null address or an IOutputAllocator to set it later"
                    # (8.5 l.2937, 10.3 l.3989, 10.13 l.4659, 11.1 l.4361)
                    allocator = self._allocators.get(name)
                    if allocator is None:
                        if not addr:
                            return self._fail(f"Neither address or allocator is set for output tensor {name}")
                        continue
                    rows = fake.dds_rows
                    shape = tuple(rows if d < 0 else d for d in dims)
                    size = max(1, int(__import__("math").prod(shape)) * 4)
                    ptr = self._reallocate(allocator, name, addr, size, stream)
                    if not ptr:
                        return self._fail(f"output allocator returned nullptr for {name}")
                    self._addresses[name] = int(ptr)
                    # "Called by TensorRT sometime between when it calls reallocateOutput and enqueueV3 returns"
                    allocator.notify_shape(name, trt.Dims._new(shape))
                    continue
                if not addr and self._allocators.get(name) is None:
                    return self._fail(f"Neither address or allocator is set for output tensor {name}")
            return True

        def _reallocate(self, allocator, name, addr, size, stream):
            # R4 as the bindings drive it: PyOutputAllocator (pyCore.cpp release/10.3 l.497-584) calls
            # the Python reallocate_output_async when overridden, else falls back to reallocate_output
            # (deprecated in 10.0, NvInferRuntime.h 10.3 l.3457); 8.5's calls reallocate_output only.
            asynchronous = int(release.split(".")[0]) >= 10 and "reallocate_output_async" in {
                k for klass in type(allocator).__mro__ if not klass.__dict__.get("_generated", False)
                for k in vars(klass)}
            if asynchronous:
                fake.calls.append(("reallocate_output_async", name))
                return allocator.reallocate_output_async(name, addr, size, 256, stream)
            fake.calls.append(("reallocate_output", name))
            return allocator.reallocate_output(name, addr, size, 256)

    class Dims:
        def _setup(self, shape=()):
            self._shape = tuple(int(d) for d in shape)

        def __iter__(self):
            return iter(self._shape)

        def __len__(self):
            return len(self._shape)

        def __getitem__(self, i):
            return self._shape[i]

        def __eq__(self, other):
            return tuple(self) == tuple(other)

        def __repr__(self):
            return repr(self._shape)

    # interface classes users subclass: the constructor only marks the object initialised
    return {k: v for k, v in locals().items() if isinstance(v, type) and k[0].isupper()}


def _install(trt, classes, nested):
    """Put the classes on the module and their nested enums (exported members too) on the classes."""
    for name, cls in classes.items():
        setattr(trt, name, cls)
    for name, (enum, members, export) in nested.items():
        owner, short = name.rsplit(".", 1)
        if owner in classes:
            setattr(classes[owner], short, enum)
            if export:
                for m, v in members.items():
                    setattr(classes[owner], m, v)


def make_fake_trt(feats, inputs=(("input", (-1, 1, 8, 8)),), outputs=(("logits", (-1, 10)),), build_result=ENCODE,
                  errors_on_build=(), dla_cores=0, parse_errors=(), surface: str | None = None,
                  version: str | None = None, plugin_layers=(), library_creators=None):
    """A ``tensorrt`` module for the release of ``feats`` (or the given ``surface``, e.g. the
    10.13 bindings under a 10.16 ``__version__``). ``parse_errors``: [(text, node name[, node
    index])]; ``build_result``: bytes to return, None for a failed build, default a
    deserializable engine."""
    surf = load_surface(surface or surface_for(feats.version))
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version or feats.version_string
    fake = types.SimpleNamespace(calls=[], log=[], calibration=[], calibration_reads=[], calibration_shapes=None,
                                 builder=None, network=None, config=None,
                                 registry=None, surface=surf,
                                 valid_timing_caches={b"TIMING"}, plugin_load_fails=False,
                                 creators=set(), library_creators=dict(library_creators or {}), double_loads=[],
                                 live_contexts=weakref.WeakSet(), dds_rows=3, parse_plugin_missing=None,
                                 parsed_models=[])

    def synchronize(stream):
        """The tests' CUDA stand-in calls this for cuStreamSynchronize (R3)."""
        fake.calls.append(("synchronize", int(stream)))
        for ctx in list(fake.live_contexts):
            if ctx._pending_stream == int(stream):
                ctx._pending_stream = None
    fake.synchronize = synchronize
    trt._fake = fake
    # enums first: class bodies refer to them
    nested = {}
    for name, spec in surf["enums"].items():
        enum, members = make_enum(name, spec)
        if "." in name:
            nested[name] = (enum, members, spec.get("export_values"))
        else:
            setattr(trt, name, enum)
    classes = build_classes(surf, {}, fake)  # placeholders so behaviour can refer to trt.X
    _install(trt, classes, nested)
    impls = _impls(trt, fake, surf, inputs, outputs, build_result, tuple(errors_on_build), dla_cores,
                   tuple(parse_errors), tuple(plugin_layers))
    classes = build_classes(surf, impls, fake)
    _install(trt, classes, nested)
    if "IPluginRegistry" in classes:
        fake.registry = classes["IPluginRegistry"]._new()

    def function(name, fn):
        sigs = surf["functions"][name]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            check_call(name, sigs, args, kwargs)
            fake.calls.append(name)
            return fn(*args, **kwargs)
        return wrapper

    def init_libnvinfer_plugins(logger, namespace):
        # R1: initLibNvInferPlugins "Initialize and register all the existing TensorRT plugins to the
        # Plugin Registry" (NvInferPlugin.h 8.5 l.27, 10.3 l.32): EfficientNMS_TRT, ...
        fake.creators.update(BUILTIN_PLUGINS)
        return True

    behaviour = {"get_plugin_registry": lambda: fake.registry,
                 "init_libnvinfer_plugins": init_libnvinfer_plugins,
                 "get_nv_onnx_parser_version": lambda: 0}
    for name in surf["functions"]:
        if name in behaviour:
            setattr(trt, name, function(name, behaviour[name]))
        else:
            def unmodelled(*a, _n=name, **k):
                check_call(_n, surf["functions"][_n], a, k)
                raise NotImplementedError(f"fake_trt does not model tensorrt.{_n}()")
            setattr(trt, name, unmodelled)
    return trt
