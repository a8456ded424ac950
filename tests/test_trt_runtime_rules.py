"""TensorRT's runtime rules, per release, against the strict stand-in (fake_trt.py R1-R5):
plugins registered before deserialization (one engine loader for every caller), one
optimization profile per concurrent execution context of a dynamic-shape engine
(``--contexts``), ``set_optimization_profile_async`` semantics, output allocators for
data-dependent shapes, shape tensors in host memory; and no leaked contexts, streams or
buffers across 1,000 fork/close cycles. Each test fails when our code breaks the rule
(the mutation tests below break it on purpose and watch the stand-in refuse)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from badinput import assert_bad_input
from fake_trt import engine_bytes, make_fake_trt
from test_bench_tensorrt_runner import HostPinned, host_device  # noqa: F401 (fixture)
from test_trt_api_surface import PROFILE, TARGETS, HostBuffer, HostStream, target
from tegra_ai.errors import TegraAIError
from tegra_ai.spec import BuildOptions, BuildRequest, Sidecar
from tegra_ai.trt import compat


def _build(tmp_path, default_model, name="m.engine", **opts):
    from tegra_ai.trt.builder import build_engine, write_engine

    plugins = opts.pop("plugins", ())
    r = build_engine(default_model, BuildOptions(profiles=PROFILE, plugins=plugins, **opts), plugins=plugins,
                     show_progress=False)
    path = str(tmp_path / name)
    write_engine(r, path)
    return path


def _fresh(monkeypatch, name, **kw):
    """A new process's view: a new tensorrt module, nothing registered yet."""
    return target(monkeypatch, name, **kw)


def _release(trt):
    return trt._fake.surface["release"]


# --------------------------------------------------------------------------- R1 plugins

@pytest.mark.parametrize("name", TARGETS)
def test_builtin_plugin_engine_loads_in_every_caller(monkeypatch, tmp_path, default_model, host_device, name):
    """An engine with EfficientNMS_TRT deserializes in the runner, inspect and ensure's
    verification: the one loader registers TensorRT's built-in plugins first."""
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.cache.ensure import default_loader
    from tegra_ai.trt.inspect import inspect_engine

    _fresh(monkeypatch, name, plugin_layers=("EfficientNMS_TRT",))
    engine = _build(tmp_path, default_model)
    trt, _ = _fresh(monkeypatch, name, plugin_layers=("EfficientNMS_TRT",))
    # the stand-in's rule: without the registry, TensorRT cannot deserialize it
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(engine, "rb").read()) is None
    assert any("could not find plugin" in m or "Cannot find plugin" in m for _s, m in trt._fake.log)
    with TensorRTRunner(engine, shapes={"input": (2, 1, 8, 8)}) as runner:
        assert runner.infer({"input": np.zeros((2, 1, 8, 8), np.float32)})["logits"].shape == (2, 10)
    assert "init_libnvinfer_plugins" in trt._fake.calls
    _fresh(monkeypatch, name, plugin_layers=("EfficientNMS_TRT",))
    assert inspect_engine(engine)["io"]
    _fresh(monkeypatch, name, plugin_layers=("EfficientNMS_TRT",))
    default_loader()(engine)


def test_without_the_registry_the_plugin_is_named(monkeypatch, tmp_path, default_model, host_device):
    """Mutation: a loader that skips init_libnvinfer_plugins fails, naming the plugin, exit 69."""
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.trt import loader

    _fresh(monkeypatch, "jetpack6", plugin_layers=("EfficientNMS_TRT",))
    engine = _build(tmp_path, default_model)
    _fresh(monkeypatch, "jetpack6", plugin_layers=("EfficientNMS_TRT",))
    monkeypatch.setattr(loader, "init_plugin_registry", lambda trt, logger: None)
    with pytest.raises(TegraAIError, match=r"uses plugin EfficientNMS_TRT \(version 1\)") as exc:
        TensorRTRunner(engine).activate()
    assert exc.value.exit_code == 69


PLUGIN_TARGETS = [t for t in TARGETS if compat.features_for(compat.API_TARGETS[t][1]).registry_load_library]


@pytest.mark.parametrize("name", PLUGIN_TARGETS)
def test_recorded_plugin_library_is_loaded_by_path_and_digest(monkeypatch, tmp_path, default_model, host_device,
                                                              name):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    lib = tmp_path / "lib" / "libmy_plugin.so"
    lib.parent.mkdir()
    lib.write_bytes(b"plugin build 1")
    kw = dict(plugin_layers=("MyPlugin_TRT",), library_creators={"libmy_plugin.so": ["MyPlugin_TRT"]})
    _fresh(monkeypatch, name, **kw)
    engine = _build(tmp_path, default_model, plugins=(str(lib),))
    rec = Sidecar.load(engine + ".json").request["plugins"]
    assert rec == [{"name": "libmy_plugin.so", "path": str(lib),
                    "sha256": __import__("hashlib").sha256(b"plugin build 1").hexdigest()}]

    trt, _ = _fresh(monkeypatch, name, **kw)
    with TensorRTRunner(engine):
        pass
    assert ("load_library", str(lib)) in trt._fake.calls

    # the library moved into a plugin directory (TEGRA_AI_PLUGIN_PATH): found there, same digest
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    shutil.move(str(lib), str(plugdir / "libmy_plugin.so"))
    monkeypatch.setenv("TEGRA_AI_PLUGIN_PATH", str(plugdir))
    trt, _ = _fresh(monkeypatch, name, **kw)
    with TensorRTRunner(engine):
        pass
    assert ("load_library", str(plugdir / "libmy_plugin.so")) in trt._fake.calls

    # another build of the library: refused (exit 2), never loaded
    (plugdir / "libmy_plugin.so").write_bytes(b"plugin build 2")
    trt, _ = _fresh(monkeypatch, name, **kw)
    with pytest.raises(TegraAIError, match="libmy_plugin.so sha256") as exc:
        TensorRTRunner(engine).activate()
    assert exc.value.exit_code == 2 and not any(c[0] == "load_library" for c in trt._fake.calls if
                                                isinstance(c, tuple))
    # missing everywhere: named, exit 69
    os.unlink(plugdir / "libmy_plugin.so")
    _fresh(monkeypatch, name, **kw)
    with pytest.raises(TegraAIError, match="needs plugin library libmy_plugin.so") as exc:
        TensorRTRunner(engine).activate()
    assert exc.value.exit_code == 69


def test_inspect_cli_names_a_missing_plugin(monkeypatch, tmp_path, default_model):
    """An engine without a sidecar whose plugin nobody registered: one line, exit 69."""
    from tegra_ai.cli.optimize import main

    kw = dict(plugin_layers=("MyPlugin_TRT",), library_creators={"libmy_plugin.so": ["MyPlugin_TRT"]})
    lib = tmp_path / "libmy_plugin.so"
    lib.write_bytes(b"x")
    _fresh(monkeypatch, "jetpack6", **kw)
    engine = _build(tmp_path, default_model, plugins=(str(lib),))
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(engine, bare / "m.engine")       # no sidecar: nothing says which library
    _fresh(monkeypatch, "jetpack6", **kw)
    assert_bad_input(main, ["inspect", "m.engine"], str(bare), 69, "uses plugin MyPlugin_TRT (version 1)")


# --------------------------------------------------------------------------- R2/R3 contexts and profiles

def test_contexts_build_one_profile_set_per_context(monkeypatch, tmp_path, default_model):
    trt, _ = target(monkeypatch, "jetpack6")
    engine = _build(tmp_path, default_model, contexts=3)
    assert len(trt._fake.config._profiles) == 3
    sc = Sidecar.load(engine + ".json")
    assert sc.options.contexts == 3 and len(sc.profiles) == 1
    # the default stays out of the key: engines built before --contexts keep their key
    assert "contexts" not in BuildOptions(contexts=1).to_dict() and BuildOptions(contexts=2).to_dict()["contexts"] == 2
    from tegra_ai.trt.inspect import inspect_engine

    target(monkeypatch, "jetpack6")
    assert len(inspect_engine(engine)["profiles"]) == 3


@pytest.mark.parametrize("name", TARGETS)
def test_each_context_gets_its_own_profile(monkeypatch, tmp_path, default_model, host_device, name):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    trt, _ = target(monkeypatch, name)
    engine = _build(tmp_path, default_model, contexts=2)
    target_trt, _ = target(monkeypatch, name)
    with TensorRTRunner(engine, shapes={"input": (4, 1, 8, 8)}) as runner:
        runner.run_async(11)
        other = runner.fork()
        selects = [c for c in target_trt._fake.calls if isinstance(c, tuple) and c[0] == "select_profile"]
        assert [c[1] for c in selects] == [0, 1]
        # selected on the runner's stream (7), which was synchronized before any enqueue elsewhere
        assert ("synchronize", 7) in target_trt._fake.calls
        other.run_async(12)
        runner.run_async(11)
        with pytest.raises(TegraAIError, match="--contexts 2") as exc:   # a third concurrent context
            runner.fork()
        assert exc.value.exit_code == 2
        other.close()
        third = runner.fork()       # the slot came back
        third.run_async(13)
        third.close()


def test_fork_of_a_single_context_engine_is_refused_naming_the_option(monkeypatch, tmp_path, default_model,
                                                                      host_device):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    target(monkeypatch, "jetpack5")
    engine = _build(tmp_path, default_model)
    target(monkeypatch, "jetpack5")
    with TensorRTRunner(engine, shapes={"input": (4, 1, 8, 8)}) as runner, \
            pytest.raises(TegraAIError, match="build option --contexts 1") as exc:
        runner.fork()
    assert "rebuild with --contexts 2" in exc.value.hint


def test_stand_in_refuses_shared_profiles_and_unsynchronized_selection(monkeypatch, tmp_path, default_model):
    """The rules themselves (what a regression in our code would run into)."""
    trt, feats = target(monkeypatch, "jetpack6")
    engine_path = _build(tmp_path, default_model, contexts=2)
    trt, feats = target(monkeypatch, "jetpack6")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(engine_path, "rb").read())
    a, b = engine.create_execution_context(), engine.create_execution_context()
    for c in (a, b):
        c.set_input_shape("input", (1, 1, 8, 8))
        c.set_tensor_address("input", 1)
        c.set_tensor_address("logits", 2)
    # 10.x gives both profile 0: the second may not run while the first lives (R2)
    assert a.execute_async_v3(5) is False and b.execute_async_v3(5) is False
    assert b.set_optimization_profile_async(0, 5) is False              # held by a
    assert b.set_optimization_profile_async(2, 5) is False              # out of range
    with pytest.raises(TegraAIError, match="refused optimization profile 2"):
        compat.set_optimization_profile(b, 2, 5)                        # the return value is checked
    assert b.set_optimization_profile_async(1, 5) is True
    b.set_input_shape("input", (1, 1, 8, 8))
    assert b.execute_async_v3(6) is False                               # selected on 5, not synchronized (R3)
    trt._fake.synchronize(5)
    assert b.execute_async_v3(6) is True and a.execute_async_v3(6) is True


def test_8_5_second_context_has_no_profile_until_selected(monkeypatch, tmp_path, default_model):
    trt, _ = target(monkeypatch, "jetpack5")
    engine_path = _build(tmp_path, default_model, contexts=2)
    trt, _ = target(monkeypatch, "jetpack5")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(engine_path, "rb").read())
    first, second = engine.create_execution_context(), engine.create_execution_context()
    assert first.set_input_shape("input", (1, 1, 8, 8)) is True
    assert second.set_input_shape("input", (1, 1, 8, 8)) is False
    assert second.set_optimization_profile_async(1, 0) is True and second.set_input_shape("input", (1, 1, 8, 8))


def test_dropping_the_synchronize_breaks_the_enqueue(monkeypatch, tmp_path, default_model, host_device):
    """Mutation: without the stream synchronize after the profile selection, enqueueing on
    another stream fails in the stand-in as the header says it is undefined."""
    from tegra_ai.backend.tensorrt import TensorRTRunner
    from tegra_ai.cuda import driver

    target(monkeypatch, "jetpack6")
    engine = _build(tmp_path, default_model, contexts=2)
    target(monkeypatch, "jetpack6")
    monkeypatch.setattr(driver, "stream_synchronize", lambda stream=0: None)
    with TensorRTRunner(engine, shapes={"input": (4, 1, 8, 8)}) as runner, \
            pytest.raises(TegraAIError, match="failed to enqueue"):
        runner.run_async(11)


def test_static_engines_need_no_profile_per_context(monkeypatch, host_device, tmp_path):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    trt, _ = target(monkeypatch, "jetpack6")
    path = tmp_path / "s.engine"
    path.write_bytes(engine_bytes(_release(trt), [["x", "INPUT", [1, 4]], ["y", "OUTPUT", [1, 2]]]))
    with TensorRTRunner(str(path)) as runner:
        forks = [runner.fork() for _ in range(5)]
        for i, f in enumerate(forks):
            f.run_async(20 + i)
        assert not any(isinstance(c, tuple) and c[0] == "select_profile" for c in trt._fake.calls)
        for f in forks:
            f.close()


def test_runtime_workers_share_one_engine_within_its_contexts(monkeypatch, tmp_path, default_model, host_device):
    from tegra_ai.backend.tensorrt import shared_engine_factory
    from tegra_ai.runtime.engine import ModelRuntime

    target(monkeypatch, "jetpack6")
    engine = _build(tmp_path, default_model, contexts=2)
    trt, _ = target(monkeypatch, "jetpack6")
    with ModelRuntime({"d": shared_engine_factory(engine)}, workers=2) as rt:
        futures = [rt.submit("d", {"input": np.zeros((2, 1, 8, 8), np.float32)}) for _ in range(8)]
        assert all(f.result(10)["logits"].shape == (2, 10) for f in futures)
    assert sum(1 for c in trt._fake.calls if c == ("Runtime", "deserialize_cuda_engine")) == 1
    target(monkeypatch, "jetpack6")
    with pytest.raises(TegraAIError, match="--contexts 2"):
        ModelRuntime({"d": shared_engine_factory(engine)}, workers=3)


# --------------------------------------------------------------------------- leaks

def test_no_leaks_across_1000_fork_close_cycles(monkeypatch, tmp_path, default_model, host_device):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    target(monkeypatch, "jetpack6")
    engine = _build(tmp_path, default_model, contexts=2)
    trt, _ = target(monkeypatch, "jetpack6")
    streams, buffers, pinned = HostStream.live, HostBuffer.live, HostPinned.live
    with TensorRTRunner(engine, shapes={"input": (4, 1, 8, 8)}) as runner:
        runner.prepare()
        base = (HostStream.live, HostBuffer.live, HostPinned.live, len(trt._fake.live_contexts))
        for i in range(1000):
            other = runner.fork()
            other.run_async(100 + i % 4)
            other.close()
        assert (HostStream.live, HostBuffer.live, HostPinned.live, len(trt._fake.live_contexts)) == base
        assert runner.loaded.contexts_in_use == 1
    assert (HostStream.live, HostBuffer.live, HostPinned.live) == (streams, buffers, pinned)
    assert len(trt._fake.live_contexts) == 0


# --------------------------------------------------------------------------- R4/R5 shapes

def _dds_engine(trt, tmp_path):
    path = tmp_path / "nonzero.engine"
    path.write_bytes(engine_bytes(_release(trt), [["x", "INPUT", [2, 4]], ["idx", "OUTPUT", [-1, 2], "dds"]]))
    return str(path)


@pytest.mark.parametrize("name", TARGETS)
def test_data_dependent_output_through_the_output_allocator(monkeypatch, tmp_path, host_device, name):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    trt, feats = target(monkeypatch, name)
    engine = _dds_engine(trt, tmp_path)
    with TensorRTRunner(engine) as runner:
        assert runner.output_metadata()[0].shape == (None, 2)
        out = runner.infer({"x": np.ones((2, 4), np.float32)})
        assert out["idx"].shape == (3, 2)                                  # the shape notify_shape reported
        trt._fake.dds_rows = 5                                            # another input, another size
        assert runner.infer({"x": np.ones((2, 4), np.float32)})["idx"].shape == (5, 2)
        # the device API: sized by TensorRT at enqueue, downloaded at the reported shape
        runner.run_async(9)
        assert runner.host_buffers["idx"].shape == (5, 2)
    called = {c[0] for c in trt._fake.calls if isinstance(c, tuple)}
    # 10.x drives reallocate_output_async (reallocate_output is deprecated); 8.x reallocate_output
    assert ("reallocate_output_async" in called) is feats.output_allocator_async
    assert ("reallocate_output" in called) is (not feats.output_allocator_async)


def test_data_dependent_output_without_allocator_fails_in_the_stand_in(monkeypatch, tmp_path):
    trt, _ = target(monkeypatch, "jetpack6")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(_dds_engine(trt, tmp_path), "rb").read())
    ctx = engine.create_execution_context()
    ctx.set_tensor_address("x", 1)
    assert tuple(ctx.get_tensor_shape("idx")) == (-1, 2)
    assert ctx.execute_async_v3(0) is False
    assert any("Neither address or allocator" in m for _s, m in trt._fake.log)


def _shape_engine(trt, tmp_path, dtype):
    path = tmp_path / "topk.engine"
    path.write_bytes(engine_bytes(_release(trt), [["x", "INPUT", [1, 4]], ["k", "INPUT", [2], "shape", dtype],
                                                   ["y", "OUTPUT", [-1, -1], "from:k"]]))
    return str(path)


@pytest.mark.parametrize("name", TARGETS)
def test_shape_tensor_inputs_live_on_the_host(monkeypatch, tmp_path, host_device, name):
    from tegra_ai.backend.tensorrt import TensorRTRunner

    trt, feats = target(monkeypatch, name)
    dtype = "INT32" if feats.version[0] < 10 else "INT64"    # 8.5: int32 only (NvInferRuntime.h l.2940)
    engine = _shape_engine(trt, tmp_path, dtype)
    with TensorRTRunner(engine) as runner:
        meta = {t["name"]: t for t in runner.io}
        assert meta["k"]["location"] == "host" and meta["k"]["shape_tensor"] and not meta["x"]["shape_tensor"]
        out = runner.infer({"x": np.zeros((1, 4), np.float32), "k": np.array([2, 5])})
        assert out["y"].shape == (2, 5)
    with TensorRTRunner(engine, shape_values={"k": [3, 1]}) as runner:
        assert "k" not in runner.device_inputs and runner.host_buffers["y"].shape == (3, 1)
        runner.run_async(4)
    with TensorRTRunner(engine) as runner, pytest.raises(TegraAIError, match="shape tensor") as exc:
        runner.prepare()
    assert exc.value.exit_code == 2


def test_shape_tensor_on_the_device_is_refused_by_the_stand_in(monkeypatch, tmp_path):
    trt, _ = target(monkeypatch, "jetpack6")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(_shape_engine(trt, tmp_path, "INT64"),
                                                                     "rb").read())
    ctx = engine.create_execution_context()
    device = HostBuffer(16)
    for n in ("x", "y"):
        ctx.set_tensor_address(n, int(HostBuffer(64)))
    ctx.set_tensor_address("k", int(device))
    assert tuple(ctx.get_tensor_shape("y")) == (-1, -1)       # TensorRT cannot read device values
    assert ctx.execute_async_v3(0) is False
    assert any("must be in host memory" in m for _s, m in trt._fake.log)


# --------------------------------------------------------------------------- shape-tensor profiles (builder)

def _shape_net(feats, k_dims=()):
    """A network with an execution input x and a shape-tensor input k (int32 on 8.x, as
    setShapeValues requires there; int64 allowed from 10.0)."""
    dtype = "INT32" if feats.version[0] < 10 else "INT64"
    return dict(inputs=(("x", (1, 4)), ("k", k_dims, dtype, "shape")), outputs=(("y", (-1, -1)),))


def _shape_build(tmp_path, default_model, shapes):
    from tegra_ai.trt.builder import build_engine

    return build_engine(default_model, BuildOptions.from_request(shapes=shapes), show_progress=False)


@pytest.mark.parametrize("name", TARGETS)
def test_shape_tensor_profile_takes_values(monkeypatch, tmp_path, default_model, name):
    """--shapes k=1:5:10 reaches IOptimizationProfile.set_shape_input as values on every
    release; the engine and its sidecar carry them; the stand-in accepts the build."""
    library, version, _ = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    trt, _ = target(monkeypatch, name, **_shape_net(feats))
    r = _shape_build(tmp_path, default_model, ["k=1:5:10"])
    assert r.sidecar.profiles == [[{"name": "x", "min": [1, 4], "opt": [1, 4], "max": [1, 4]},
                                   {"name": "k", "min": [1], "opt": [5], "max": [10], "values": True}]]
    desc = __import__("json").loads(r.engine.split(b"\n", 1)[1])
    assert desc["shape_values"] == [{"k": [[1], [5], [10]]}] and ["k", "INPUT", [], "shape"] == desc["io"][1][:4]
    assert trt._fake.config._profiles[0].get_shape_input("k") == [[1], [5], [10]]
    from tegra_ai.trt.builder import write_engine
    from tegra_ai.trt.inspect import inspect_engine

    path = str(tmp_path / "k.engine")
    write_engine(r, path)
    profile = inspect_engine(path)["profiles"][0]
    # the engine's own record: values through get_tensor_profile_values where the bindings have it (10.0+)
    assert ({"name": "k", "min": [1], "opt": [5], "max": [10], "values": True} in profile) is (feats.version[0] >= 10)


@pytest.mark.parametrize("name", TARGETS)
def test_shape_tensor_dims_or_missing_values_are_refused(monkeypatch, tmp_path, default_model, name):
    library, version, _ = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    target(monkeypatch, name, **_shape_net(feats, k_dims=(2,)))
    with pytest.raises(TegraAIError, match="takes values, not dimensions") as exc:
        _shape_build(tmp_path, default_model, ["k:2"])
    assert exc.value.exit_code == 2
    with pytest.raises(TegraAIError, match="need their values in --shapes"):
        _shape_build(tmp_path, default_model, [])
    with pytest.raises(TegraAIError, match="'x' is not a shape tensor"):
        _shape_build(tmp_path, default_model, ["x=1x4,k=2x2"])
    _shape_build(tmp_path, default_model, ["k=1x1:2x3:4x6"])


@pytest.mark.parametrize("name", ["jetpack5", "jetpack6", "trt-11"])
def test_stand_in_rejects_dims_on_a_shape_tensor_and_values_on_an_execution_tensor(monkeypatch, name):
    """Mutations our resolve_profiles prevents, made on the stand-in directly: a profile
    that gives k dims (no values) or x values fails the build as setShapeValues' contract
    says (NvInferRuntime.h 8.5 l.1182-1184, 10.3 l.2210-2212, 11.1 l.2684-2686)."""
    from tegra_ai.spec import InputShapes

    library, version, _ = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    trt, _ = target(monkeypatch, name, **_shape_net(feats, k_dims=(2,)))
    for shapes, message in (([InputShapes("k", (2,), (2,), (2,))], "k has no shape values"),
                            ([InputShapes("k", (1, 1), (2, 2), (3, 3), True),
                              InputShapes("x", (1, 4), (1, 4), (1, 4), True)], "x, which is not a shape tensor")):
        builder = trt.Builder(trt.Logger())
        network = builder.create_network(0 if feats.version[0] >= 10 else 1)
        config = builder.create_builder_config()
        compat.add_optimization_profile(builder, config, shapes, feats)
        assert builder.build_serialized_network(network, config) is None
        assert any(message in m for _s, m in trt._fake.log), message


@pytest.mark.parametrize("name", TARGETS)
def test_shape_values_range_per_release(monkeypatch, tmp_path, default_model, name):
    """Up to 10.10 the binding takes int32 values (setShapeValues), from 10.11 int64
    (setShapeValuesV2): 3e9 is refused with one line before the build, or built."""
    library, version, _ = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    trt, _ = target(monkeypatch, name, **_shape_net(feats))
    big = ["k=1:5:3000000000"]
    if feats.shape_values_int64:
        _shape_build(tmp_path, default_model, big)
    else:
        with pytest.raises(TegraAIError, match="shape-tensor values of 32 bits") as exc:
            _shape_build(tmp_path, default_model, big)
        assert exc.value.exit_code == 2
        with pytest.raises(TypeError):    # the stand-in's binding, as pybind11's int32 caster refuses it
            trt.Builder(trt.Logger()).create_optimization_profile().set_shape_input("k", [1], [5], [3000000000])


@pytest.mark.parametrize("name", TARGETS)
def test_shape_tensor_rank_per_release(monkeypatch, tmp_path, default_model, name):
    """A 2x2 shape tensor: 8.x-9.x take rank 0 or 1 only, 10.0+ any rank up to 64 values."""
    library, version, _ = compat.API_TARGETS[name]
    feats = compat.features_for(version, library_version=library)
    target(monkeypatch, name, **_shape_net(feats, k_dims=(2, 2)))
    if feats.shape_tensor_any_rank:
        assert _shape_build(tmp_path, default_model, ["k=1x1x1x1:2x2x2x2:4x4x4x4"]).sidecar.profiles
    else:
        with pytest.raises(TegraAIError, match="rank 0 or 1 only"):
            _shape_build(tmp_path, default_model, ["k=1x1x1x1"])


# --------------------------------------------------------------------------- one build request

def test_build_request_travels_whole(tmp_path, default_model):
    lib = tmp_path / "libp.so"
    lib.write_bytes(b"p")
    req = BuildRequest.from_request(default_model, timing_cache=str(tmp_path / "t.cache"), plugins=[str(lib)],
                                    precision="fp16", shapes=["input:1x1x8x8:8x1x8x8:64x1x8x8"], contexts=2)
    assert req.options.plugins == ("libp.so",) and req.options.contexts == 2
    assert BuildRequest.from_dict(req.to_dict()) == req
    with pytest.raises(TegraAIError, match="do not match the build options"):
        BuildRequest(model=default_model, options=BuildOptions(), plugins=(str(lib),))
    with pytest.raises(TegraAIError, match="unknown field"):
        BuildRequest.from_dict(dict(req.to_dict(), timing_cache_path="x"))
    rec = req.record({"libp.so": "a" * 64})
    assert rec["plugins"] == [{"name": "libp.so", "path": str(lib), "sha256": "a" * 64}]
    assert rec["model"] == os.path.basename(default_model) and rec["timing_cache"] == "t.cache"


def test_child_receives_the_request_whole(monkeypatch, tmp_path, default_model):
    """build_in_child writes the BuildRequest as one object; the child rebuilds the same one."""
    import json

    from tegra_ai.cache import build_child

    seen = {}

    class Stop(Exception):
        pass

    def fake_popen(argv, **kw):
        with open(argv[-1]) as f:
            seen.update(json.load(f))
        raise Stop

    monkeypatch.setattr(build_child.subprocess, "Popen", fake_popen)
    req = BuildRequest.from_request(default_model, precision="fp16", contexts=2)
    with pytest.raises(Stop):
        build_child.build_in_child(req, temp_prefix=str(tmp_path / "x"))
    assert BuildRequest.from_dict(seen["build"]) == req.replace(model=os.path.abspath(default_model))
    assert not {"onnx", "options", "plugins", "timing_cache"} & set(seen)


def test_yocto_class_constructs_the_clis_request(monkeypatch, tmp_path, default_model):
    """The layer's ModelSpec, through the request file the class writes, and `tensorrt-optimize
    bundle` with the same options as flags make the same BuildRequest."""
    import json

    from tegra_ai.cli import optimize

    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
    from tegra_ai_layer.engines import ModelSpec

    shutil.copy(default_model, tmp_path / "d.onnx")
    (tmp_path / "c.cache").write_bytes(b"TRT-8500-EntropyCalibration2\n")
    spec = ModelSpec("d", "d.onnx", "int8", shapes=["input:1x1x8x8:8x1x8x8:64x1x8x8"], workspace=1 << 28,
                     calibration="c.cache", timing_cache="c.cache", contexts=2)
    (tmp_path / "req").mkdir()
    (tmp_path / "req" / "d.json").write_text(json.dumps(spec.request_json(str(tmp_path), str(tmp_path / "req"))))
    from_file = optimize._request_from_file(str(tmp_path / "req" / "d.json"))
    assert from_file == spec.build_request(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    flags = ["--precision", "int8", "--shapes", "input:1x1x8x8:8x1x8x8:64x1x8x8", "--workspace", str(1 << 28),
             "--calibration-cache", "c.cache", "--timing-cache", "c.cache", "--contexts", "2"]
    args = optimize.build_parser().parse_args(["bundle", "d.onnx", "--out", "out"] + flags)
    assert optimize._request_from_args(args).map_files(os.path.abspath) == from_file
