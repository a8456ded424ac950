from __future__ import annotations

import io

from tegra_ai import platform
from tegra_ai.util.progress import Progress, format_elapsed


def _fake_jetson(tmp_path, compatible, model="NVIDIA Jetson AGX Orin Developer Kit"):
    dt = tmp_path / "dt"
    dt.mkdir()
    (dt / "compatible").write_bytes(compatible.encode() + b"\x00nvidia,p3737-0000\x00")
    (dt / "model").write_bytes(model.encode() + b"\x00")
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    return str(dt), str(rel)


def test_jetson_facts_without_cuda(tmp_path):
    dt, rel = _fake_jetson(tmp_path, "nvidia,tegra234")
    facts = platform.detect(dt, rel, use_cuda=False)
    assert facts.compute_capability == "8.7" and facts.device_name == "Orin"
    assert facts.board == "NVIDIA Jetson AGX Orin Developer Kit" and facts.l4t_release == "36.4.3"
    assert facts.module is None          # this compatible names a carrier (p3737), no module


# Device trees as the L4T kernel writes /proc/device-tree for a devkit (carrier+module,
# module, SoC: tegra234-p3768-0000+p3767-0005-nv.dts) and for product carriers that keep
# NVIDIA's module entry under their own board entry.
ORIN_NANO_DEVKIT = ("nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234",
                    "NVIDIA Jetson Orin Nano Developer Kit")
ORIN_NANO_PRODUCT = ("acme,vision-box-2\0nvidia,p3767-0005\0nvidia,tegra234", "ACME Vision Box 2 rev C")
ORIN_NX_ON_DEVKIT = ("nvidia,p3768-0000+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234",
                     "NVIDIA Jetson Orin Nano Developer Kit")
AGX_ORIN_DEVKIT = ("nvidia,p3737-0000+p3701-0005\0nvidia,p3701-0005\0nvidia,tegra234",
                   "NVIDIA Jetson AGX Orin Developer Kit")
PRODUCT_OWN_DT = ("acme,box\0nvidia,tegra234", "ACME Box")


def _dt(tmp_path, name, fixture, release="# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic, EABI: aarch64\n"):
    d = tmp_path / name
    (d / "dt").mkdir(parents=True)
    (d / "dt" / "compatible").write_bytes(fixture[0].encode() + b"\0")
    (d / "dt" / "model").write_bytes(fixture[1].encode() + b"\0")
    (d / "rel").write_text(release)
    return str(d / "dt"), str(d / "rel")


def _key(facts):
    from tegra_ai.spec import BuildOptions, cache_key, key_material
    return cache_key(key_material("0" * 64, BuildOptions(), {"flavor": "tensorrt", "version": "10.3.0.30"},
                                  facts.to_dict()))


def _facts(tmp_path, name, fixture, sm_count=8, cuda="12.6"):
    import dataclasses
    facts = platform.detect(*_dt(tmp_path, name, fixture), use_cuda=False)
    return dataclasses.replace(facts, sm_count=sm_count, cuda_version=cuda)   # what the driver reports


def test_same_module_on_two_carriers_has_one_key(tmp_path):
    """An engine built on the devkit (or a CI Jetson) matches the product with the same module."""
    devkit = _facts(tmp_path, "devkit", ORIN_NANO_DEVKIT)
    product = _facts(tmp_path, "product", ORIN_NANO_PRODUCT)
    assert devkit.board != product.board
    assert devkit.module == product.module == "p3767-0005"
    assert _key(devkit) == _key(product)


def test_two_modules_on_one_carrier_have_two_keys(tmp_path):
    """Orin Nano 8GB and Orin NX 16GB on the same carrier (same model string): different engines."""
    nano = _facts(tmp_path, "nano", ORIN_NANO_DEVKIT, sm_count=8)
    nx = _facts(tmp_path, "nx", ORIN_NX_ON_DEVKIT, sm_count=8)
    assert nano.board == nx.board and nano.module != nx.module
    assert _key(nano) != _key(nx)
    agx = _facts(tmp_path, "agx", AGX_ORIN_DEVKIT, sm_count=16)
    assert agx.module == "p3701-0005" and _key(agx) != _key(nano)


def test_one_device_tree_for_two_skus_differs_by_sm_count(tmp_path):
    """Where one device tree serves several SKUs (or a product DT names no module), the GPU's
    SM count still tells them apart; the carrier's model string never enters the key."""
    four = _facts(tmp_path, "a", PRODUCT_OWN_DT, sm_count=4)
    eight = _facts(tmp_path, "b", PRODUCT_OWN_DT, sm_count=8)
    assert four.module is None and _key(four) != _key(eight)
    renamed = _facts(tmp_path, "c", (PRODUCT_OWN_DT[0], "ACME Box (2027 refresh)"), sm_count=8)
    assert _key(renamed) == _key(eight)


def test_l4t_release_and_cuda_are_keyed(tmp_path):
    base = _facts(tmp_path, "a", ORIN_NANO_DEVKIT)
    other_l4t = _facts(tmp_path, "b", ORIN_NANO_DEVKIT)
    import dataclasses
    assert _key(base) == _key(other_l4t)
    assert _key(dataclasses.replace(base, l4t_release="36.5.0")) != _key(base)
    assert _key(dataclasses.replace(base, cuda_version="12.8")) != _key(base)


def test_thor_and_xavier(tmp_path):
    dt, rel = _fake_jetson(tmp_path, "nvidia,tegra264", "NVIDIA Jetson AGX Thor")
    assert platform.detect(dt, rel, use_cuda=False).compute_capability == "11.0"
    assert platform.TEGRA_SOCS["nvidia,tegra194"][0] == "7.2"


def test_no_gpu(tmp_path):
    assert platform.detect(str(tmp_path / "none"), str(tmp_path / "none"), use_cuda=False) is None


def test_progress_logs_without_tty():
    out = io.StringIO()
    with Progress("building x", stream=out, log_interval=0.1) as p:
        p.on_trt_phases({"Building": [3, 10, None]})
        import time

        time.sleep(1.3)
    text = out.getvalue()
    assert "building x:" in text and "Building 3/10" in text
    assert text.strip().splitlines()[-1].startswith("building x: done in")
    assert format_elapsed(3725) == "1:02:05"
