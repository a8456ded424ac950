"""Kernel image lookup: prebuilt before cache before NVRTC; cache keys and paths (CPU)."""

import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.kernels import loader


def test_cache_dir_follows_xdg_then_home(tmp_path):
    assert loader.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tegra-ai" / "kernels"
    assert loader.cache_dir({"HOME": "/home/u"}) == loader.Path("/home/u/.cache/tegra-ai/kernels")


def test_cache_key_depends_on_source_target_nvrtc_and_options():
    base = loader.cache_key(b"src", "sm_87", (12, 6))
    assert base == loader.cache_key(b"src", "sm_87", (12, 6))
    others = {loader.cache_key(b"src2", "sm_87", (12, 6)), loader.cache_key(b"src", "sm_72", (12, 6)),
              loader.cache_key(b"src", "sm_87", (12, 8)), loader.cache_key(b"src", "sm_87", (12, 6), ("-G",))}
    assert base not in others and len(others) == 4


def test_cache_path_suffix(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert loader.cache_path("nms", "ab" * 32, "sm_87", env).name == "nms-" + "ab" * 16 + ".cubin"
    assert loader.cache_path("nms", "ab" * 32, "compute_80", env).suffix == ".ptx"


def test_prebuilt_lookup_order(tmp_path):
    env = {"TEGRA_AI_KERNEL_DIR": str(tmp_path)}
    cands = loader.prebuilt_candidates("preprocess", (8, 7), env)
    assert cands[0] == tmp_path / "preprocess.sm_87.cubin"
    assert cands[1] == loader.Path("/usr/share/tegra-ai/kernels/preprocess.sm_87.cubin")
    assert loader.find_prebuilt("preprocess", (8, 7), env) is None
    (tmp_path / "preprocess.sm_87.cubin").write_bytes(b"\x7fELF")
    assert loader.find_prebuilt("preprocess", (8, 7), env) == cands[0]
    assert loader.find_prebuilt("preprocess", (11, 0), env) is None


@pytest.mark.parametrize("cc,archs,target", [((8, 7), [72, 87, 90], "sm_87"), ((11, 0), [87, 90, 100], "compute_100"),
                                              ((9, 0), [75, 80, 86, 87], "compute_87")])
def test_choose_target(cc, archs, target):
    assert loader.choose_target(cc, archs) == target


def test_choose_target_fails_when_nvrtc_knows_nothing_older():
    with pytest.raises(TegraAIError, match="supports no architecture"):
        loader.choose_target((7, 2), [80, 90])


def test_prebuilt_wins_without_touching_nvrtc(tmp_path, monkeypatch):
    (tmp_path / "nms.sm_87.cubin").write_bytes(b"prebuilt")
    monkeypatch.setattr(loader, "nvrtc_version", lambda: pytest.fail("NVRTC used"))
    image, source = loader.build_image("nms", (8, 7), {"TEGRA_AI_KERNEL_DIR": str(tmp_path)})
    assert image == b"prebuilt" and source.kind == "prebuilt"


def test_cache_hit_then_compile_and_store(tmp_path, monkeypatch):
    env = {"XDG_CACHE_HOME": str(tmp_path), "TEGRA_AI_KERNEL_DIR": str(tmp_path / "none")}
    monkeypatch.setattr(loader, "SYSTEM_KERNEL_DIR", tmp_path / "system")
    monkeypatch.setattr(loader, "nvrtc_version", lambda: (12, 6))
    monkeypatch.setattr(loader, "nvrtc_supported_archs", lambda: [87])
    calls = []
    monkeypatch.setattr(loader, "compile_nvrtc", lambda src, name, target: calls.append(target) or b"cubin!")
    image, source = loader.build_image("preprocess", (8, 7), env)
    assert (image, source.kind, calls) == (b"cubin!", "nvrtc", ["sm_87"])
    assert source.path.read_bytes() == b"cubin!" and source.path.parent == tmp_path / "tegra-ai" / "kernels"
    image, source = loader.build_image("preprocess", (8, 7), env)
    assert (image, source.kind, calls) == (b"cubin!", "cache", ["sm_87"])
    assert [p.name for p in source.path.parent.iterdir()] == [source.path.name]  # no temp files left


def test_unknown_module():
    with pytest.raises(TegraAIError, match="unknown kernel module"):
        loader.source_path("nope")


def _nvrtc_or_skip():
    try:
        loader.nvrtc_version()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"NVRTC (cuda-python + libnvrtc) not available: {exc}")


@pytest.mark.parametrize("module", loader.MODULES)
@pytest.mark.parametrize("target", ["sm_87", "sm_110", "compute_87"])
def test_nvrtc_compiles_every_module(module, target):
    _nvrtc_or_skip()
    if target.startswith("sm_") and int(target[3:]) not in loader.nvrtc_supported_archs():
        pytest.skip(f"this NVRTC does not know {target}")
    image = loader.compile_nvrtc(loader.read_source(module), f"{module}.cu", target)
    if target.startswith("sm_"):
        assert image[:4] == b"\x7fELF"
    else:
        assert b".target sm_" + target[len("compute_"):].encode() in image


def test_nvrtc_error_is_one_tegra_ai_error():
    _nvrtc_or_skip()
    with pytest.raises(TegraAIError, match="could not compile"):
        loader.compile_nvrtc(b"__global__ void k() { undefined_thing; }", "bad.cu", "sm_87")
