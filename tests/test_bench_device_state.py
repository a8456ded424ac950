"""Device-state and power readers against fixture trees shaped like Xavier, Orin and
Thor (tests/fixtures/jetson/README.md says where each shape comes from)."""

import os
import time

import pytest

from tegra_ai.bench import device_state as ds

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "jetson")


def root(name):
    return os.path.join(FIX, name)


def test_orin_state_and_rails():
    s = ds.collect(root("orin"), dla_core=1, use_nvidia_smi=False, run=None)
    assert s["jetson"] and s["soc"] == "Orin" and s["module"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert s["l4t_release"] == "36.3.0"
    assert s["nvpmodel"] == {"id": 3, "name": "50W"}
    assert s["jetson_clocks"] == "on" and s["gpu_freq_mhz"] == pytest.approx(1300.5)
    assert s["emc_freq_mhz"] == pytest.approx(3199) and s["cpu_freq_mhz"] == [2201.6, 2201.6]
    assert s["temperatures_c"] == {"cpu-thermal": 48.375, "gpu-thermal": 46.5, "tj-thermal": 48.375}  # cv0 off
    assert s["dla_core"] == 1
    assert s["power_rails"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]  # NC, in7 skipped
    mw = ds.read_rails_mw(ds.find_rails(root("orin")))
    assert mw["VDD_GPU_SOC"] == pytest.approx(5064 * 1417 / 1000)
    total, rule = ds.total_mw(mw)
    assert rule.startswith("sum of") and total == pytest.approx(sum(mw.values()))


def test_xavier_state_and_rails():
    s = ds.collect(root("xavier"), use_nvidia_smi=False)
    assert s["soc"] == "Xavier" and s["l4t_release"] == "35.4.1"
    assert s["nvpmodel"] == {"id": 0, "name": "MAXN"}
    assert s["jetson_clocks"] == "off"  # GPU 114..1377 MHz not pinned
    assert s["gpu_freq_range_mhz"] == [114.75, 1377.0]
    assert s["emc_freq_mhz"] is None  # debugfs not readable: unknown, not a crash
    assert sorted(s["power_rails"]) == ["CPU", "CV", "GPU", "SOC", "SYS5V", "VDDRQ"]


def test_thor_ina238_total_is_vdd_in():
    s = ds.collect(root("thor"), use_nvidia_smi=False)
    assert s["soc"] == "Thor" and s["l4t_release"] == "38.2.0" and s["nvpmodel"] is None
    mw = ds.read_rails_mw(ds.find_rails(root("thor")))
    assert mw == {"VDD_IN": pytest.approx(41250.0)}
    assert ds.total_mw(mw) == (pytest.approx(41250.0), "VDD_IN")


@pytest.mark.parametrize("board, rails, gpu_mhz, emc_mhz", [
    ("orin", {"VDD_GPU_SOC": 7176, "VDD_CPU_CV": 1610, "VIN_SYS_5V0": 3830}, 1300, 3199),
    ("xavier", {"GPU": 0, "CPU": 311, "SOC": 1244, "CV": 0, "VDDRQ": 155, "SYS5V": 1627}, 318, 2133),
    ("thor", {"VDD_GPU": 21340, "VDD_CPU_SOC_MSS": 6120, "VIN_SYS_5V0": 4100}, None, 4266),
])
def test_tegrastats_lines(board, rails, gpu_mhz, emc_mhz):
    with open(os.path.join(root(board), "tegrastats.txt")) as f:
        parsed = ds.parse_tegrastats(f.read())
    assert parsed["rails_mw"] == rails
    assert parsed["gpu_freq_mhz"] == gpu_mhz and parsed["emc_freq_mhz"] == emc_mhz
    assert all(t > -200 for t in parsed["temperatures_c"].values())


def test_missing_sources_are_unknown(tmp_path):
    s = ds.collect(str(tmp_path), use_nvidia_smi=False)
    assert not s["jetson"] and s["module"] is None and s["jetson_clocks"] == "unknown" and s["gpu"] is None
    assert ds.find_rails(str(tmp_path)) == [] and ds.total_mw({}) == (None, None)
    sampler = ds.PowerSampler("sysfs", root=str(tmp_path)).start()
    assert sampler.stop() is None


def test_sysfs_sampler_averages_rails():
    sampler = ds.PowerSampler("auto", root=root("thor"), interval_s=0.01)
    assert sampler.source == "sysfs"
    sampler.start()
    time.sleep(0.08)
    p = sampler.stop()
    assert p["samples"] >= 2 and p["avg_w"] == pytest.approx(41.25) and p["rule"] == "VDD_IN"


def test_nvidia_smi_parsing():
    text = "NVIDIA H100 80GB HBM3, 580.159.04, P0, 1980, 2619, 1980, 41, 125.46, 700.00\n"
    gpu = ds.parse_nvidia_smi(text)[0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["pstate"] == "P0"
    assert gpu["clocks.sm"] == 1980 and gpu["power.draw"] == pytest.approx(125.46)
    assert ds.parse_nvidia_smi("a, [N/A]\n", fields=("name", "power.draw"))[0]["power.draw"] is None
    assert ds.parse_nvidia_smi("garbage\n") == []


def test_nvpmodel_query_output_is_preferred():
    class Res:
        stdout = "NV Power Mode: MODE_15W\n2\n"

    assert ds.nvpmodel_mode(root("xavier"), run=lambda *a, **k: Res()) == {"id": 2, "name": "MODE_15W"}


@pytest.mark.parametrize("tool, line, watts, rule", [
    ("tegrastats", open(os.path.join(FIX, "orin", "tegrastats.txt")).read().strip(), (7176 + 1610 + 3830) / 1000,
     "tegrastats sum of VDD_CPU_CV+VDD_GPU_SOC+VIN_SYS_5V0"),
    ("nvidia-smi", "125.46", 125.46, "nvidia-smi power.draw (GPU board)"),
])
def test_streaming_samplers(tmp_path, monkeypatch, tool, line, watts, rule):
    # a stand-in executable that prints the tool's line every 10 ms
    exe = tmp_path / tool
    exe.write_text(f"#!/bin/sh\nwhile true; do echo '{line}'; sleep 0.01; done\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sampler = ds.PowerSampler(tool).start()
    time.sleep(0.3)
    p = sampler.stop()
    assert p is not None and p["samples"] >= 2 and p["source"] == tool
    assert p["avg_w"] == pytest.approx(watts) and p["rule"] == rule
    assert sampler._proc.poll() is not None  # the tool was stopped


def test_clock_changes_during_the_run_warn():
    before = {"gpu_freq_mhz": 1300.5, "gpu": None}
    assert ds.clock_warnings(before, {"gpu_freq_mhz": 1300.5}) == []
    w = ds.clock_warnings(before, {"gpu_freq_mhz": 918.0})
    assert [x["kind"] for x in w] == ["clocks-changed"] and "1300.5 -> 918" in w[0]["message"]
    smi = {"gpu": {"clocks.sm": 1980.0}}
    assert ds.clock_warnings(smi, {"gpu": {"clocks.sm": 1755.0}})[0]["kind"] == "clocks-changed"
    assert ds.clock_warnings({}, {}) == []  # unknown clocks: no claim either way
    after = ds.after_run(before, ds.collect(root("orin"), use_nvidia_smi=False))
    assert after["gpu_freq_mhz"] == pytest.approx(1300.5) and after["temperatures_c"]["gpu-thermal"] == 46.5
