"""Test-only stand-in, never installed: Python imports ``sitecustomize`` at start-up from
PYTHONPATH, so a test that puts this directory there (and sets TEGRA_AI_TEST_BUILD) gets
processes — ensure's build children, or a whole CLI — where TensorRT and the GPU are
replaced by a builder that writes bytes and a real sidecar, or crashes, or hangs, on
command. It claims nothing about TensorRT; it exercises our process handling.

TEGRA_AI_TEST_BUILD = "MODEL=ACTION,...", or "*=ACTION" for every model; ACTION is
``ok``, ``segv`` (the builder segfaults), ``sleep`` (hangs for 120 s) or ``fail`` (a
TegraAIError). TEGRA_AI_TEST_MARK: a directory where each build writes ``MODEL.pid``
(the builder's process id) when it starts."""

import os

_spec = os.environ.get("TEGRA_AI_TEST_BUILD")
if _spec:
    import signal
    import time

    from tegra_ai import platform
    from tegra_ai.errors import TegraAIError
    from tegra_ai.spec import Sidecar
    from tegra_ai.trt import builder as _builder
    from tegra_ai.trt import compat as _compat

    _actions = dict(item.split("=", 1) for item in _spec.split(",") if "=" in item)
    FEATS = _compat.features_for("10.3.0.30")
    FACTS = platform.DeviceFacts("8.7", "Orin", "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3")

    _compat.load = lambda: (None, FEATS)
    _builder.target_facts = lambda feats, cc: FACTS

    def build_engine(request, *, show_progress=True, verbose=False, memo=None):
        model_path, options, plugin_libraries = request.model, request.options, request.plugins
        name = os.path.basename(os.path.dirname(os.path.abspath(model_path)))
        action = _actions.get(name, _actions.get("*", "ok"))
        mark = os.environ.get("TEGRA_AI_TEST_MARK")
        if mark:
            tmp = os.path.join(mark, f".{name}.pid.part")
            with open(tmp, "w") as f:
                f.write(str(os.getpid()))
            os.replace(tmp, os.path.join(mark, name + ".pid"))      # never seen half-written
        if action == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if action == "sleep":
            time.sleep(120)
        if action == "fail":
            raise TegraAIError("stand-in build failure")
        from tegra_ai.onnx_files import model_digest

        sha, _files = model_digest(model_path)
        _key, material = _builder.engine_key(sha, options, FEATS, FACTS, _builder.plugin_digests(plugin_libraries))
        return _builder.BuildResult(engine=f"engine of {name}".encode(), sidecar=Sidecar.new(material, build_seconds=0.0))

    _builder.build_engine = build_engine
