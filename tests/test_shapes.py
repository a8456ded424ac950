from __future__ import annotations

import pytest

from tegra_ai.errors import TegraAIError
from tegra_ai.spec import parse_input_shapes, parse_profile
from tegra_ai.trt.shapes import ModelInput, resolve_profiles


def test_static_and_dynamic_specs():
    s = parse_input_shapes("images:1x3x320x320:4x3x640x640:8x3x1280x1280")
    assert (s.name, s.min, s.opt, s.max) == ("images", (1, 3, 320, 320), (4, 3, 640, 640), (8, 3, 1280, 1280))
    s = parse_input_shapes("x:2x3")
    assert s.min == s.opt == s.max == (2, 3)


def test_names_with_colons():
    assert parse_input_shapes("input:0:1x3:2x3:4x3").name == "input:0"


@pytest.mark.parametrize("spec,match", [
    ("images", "missing dimensions"),
    (":1x3", "missing input name"),
    ("images:1x3x:2x3", "malformed|missing"),
    ("images:1x3:2x3", "two shapes"),
    ("images:1x3:2x3x4:4x3", "different ranks"),
    ("images:4x3:2x3:8x3", "min <= opt <= max"),
    ("images:1x3:8x3:4x3", "min <= opt <= max"),
    ("images:0x3", "positive"),
])
def test_malformed_specs(spec, match):
    with pytest.raises(TegraAIError, match=match) as exc:
        parse_input_shapes(spec)
    assert exc.value.exit_code == 2


def test_profile_duplicates():
    with pytest.raises(TegraAIError, match="twice"):
        parse_profile("a:1x2,a:1x2")


INPUTS = [ModelInput("images", (None, 3, "H", "W")), ModelInput("scale", (1, 2)), ModelInput("ids", ("B", 5))]


def test_missing_dynamic_inputs_named_with_suggestion():
    with pytest.raises(TegraAIError) as exc:
        resolve_profiles(INPUTS, [parse_profile("ids:1x5:2x5:4x5")])
    assert "images" in exc.value.message and "ids" not in exc.value.message
    assert "images:1x3x320x320:1x3x640x640:8x3x1280x1280" in exc.value.hint


def test_static_inputs_filled_and_order_kept():
    profiles = resolve_profiles(INPUTS, [parse_profile("ids:1x5:2x5:4x5,images:1x3x64x64:2x3x128x128:4x3x256x256")])
    assert [s.name for s in profiles[0]] == ["images", "scale", "ids"]
    assert profiles[0][1].min == (1, 2)


def test_several_profiles_each_checked():
    ok = "images:1x3x64x64,ids:1x5"
    with pytest.raises(TegraAIError, match="profile 2"):
        resolve_profiles(INPUTS, [parse_profile(ok), parse_profile("images:1x3x64x64")])


@pytest.mark.parametrize("spec,match", [
    ("images:1x3x64,ids:1x5", "rank 3"),
    ("images:1x4x64x64,ids:1x5", "fixed to 3"),
    ("nope:1x2,images:1x3x64x64,ids:1x5", "does not have"),
])
def test_profile_mismatches(spec, match):
    with pytest.raises(TegraAIError, match=match):
        resolve_profiles(INPUTS, [parse_profile(spec)])


def test_suggested_profile_shares_named_dimensions():
    from tegra_ai.trt.shapes import ModelInput, resolve_profiles, suggest_profile

    image = ModelInput("image", ("batch", 3, "h", "w"))
    scale = ModelInput("scale", ("batch", 2))
    mask = ModelInput("mask", ("batch", 1, "h", "w"))
    image_s, scale_s, mask_s = suggest_profile([image, scale, mask])
    assert image_s.min[0] == scale_s.min[0] == mask_s.min[0]
    assert image_s.max[0] == scale_s.max[0] == mask_s.max[0] == 8
    assert (image_s.min[2:], image_s.opt[2:], image_s.max[2:]) == (mask_s.min[2:], mask_s.opt[2:], mask_s.max[2:])
    # without sharing, "scale"'s second axis would get its own range; with it, batch stays equal
    assert scale_s.opt[0] == image_s.opt[0]
    # the hint in resolve_profiles' error is such a profile, and it resolves
    with pytest.raises(TegraAIError) as exc:
        resolve_profiles([image, scale], [])
    hint = exc.value.hint.split("--shapes ", 1)[1]
    from tegra_ai.spec import parse_profile

    assert resolve_profiles([image, scale], [parse_profile(hint)])


# --- shape-tensor inputs: values, not dims (IOptimizationProfile.set_shape_input)

def test_shape_values_grammar_and_round_trip():
    from tegra_ai.spec import InputShapes

    s = parse_input_shapes("k=1:5:10")
    assert (s.name, s.min, s.opt, s.max, s.values) == ("k", (1,), (5,), (10,), True)
    s = parse_input_shapes("target=1x-1x4")                  # fixed values; a Reshape's -1 wildcard
    assert s.min == s.opt == s.max == (1, -1, 4) and s.values and s.format() == "target=1x-1x4"
    s = parse_input_shapes("starts:0=0x-8:0x-4:0x0")         # names may hold ':'; values of any sign
    assert s.name == "starts:0" and s.min == (0, -8) and s.format() == "starts:0=0x-8:0x-4:0x0"
    assert parse_input_shapes(s.format()) == s
    assert InputShapes.from_dict(s.to_dict()) == s and s.to_dict()["values"] is True
    dims = parse_input_shapes("a=b:1x3")                      # not values: a name holding '=' and its dims
    assert dims.name == "a=b" and not dims.values and "values" not in dims.to_dict()
    assert [e.values for e in parse_profile("images:1x3x8x8,k=1:2:3")] == [False, True]


@pytest.mark.parametrize("spec,match", [
    ("k=1:2", "2 sets of values"),
    ("k=3:2:1", "min <= opt <= max"),
    ("k=1x2:1:1x2", "different values"),
    ("=1:2:3", "missing input name"),
    (f"k={1 << 63}", "64 bits"),
])
def test_malformed_shape_values(spec, match):
    with pytest.raises(TegraAIError, match=match) as exc:
        parse_input_shapes(spec)
    assert exc.value.exit_code == 2


def test_profile_entry_values_from_json_are_checked():
    from tegra_ai.spec import InputShapes

    with pytest.raises(TegraAIError, match="values must be true or false"):
        InputShapes.from_dict({"name": "k", "min": [1], "opt": [1], "max": [1], "values": 1})
    with pytest.raises(TegraAIError, match="64-bit integers"):
        InputShapes.from_dict({"name": "k", "min": [1.5], "opt": [2], "max": [3], "values": True})
    with pytest.raises(TegraAIError, match="positive integers"):
        InputShapes.from_dict({"name": "x", "min": [-1], "opt": [2], "max": [3]})


K = ModelInput("k", (), "int32", shape_tensor=True)
X = ModelInput("x", (1, 4), "float32", shape_tensor=False)


def test_shape_tensor_profiles_against_the_network():
    got = resolve_profiles([X, K], [parse_profile("k=1:5:10")])
    assert [(s.name, s.values) for s in got[0]] == [("x", False), ("k", True)]
    with pytest.raises(TegraAIError, match=r"shape-tensor input\(s\) k \(1 value\(s\)\) need their values") as exc:
        resolve_profiles([X, K], [])
    assert "k=MIN:OPT:MAX" in exc.value.hint
    with pytest.raises(TegraAIError, match="takes values, not dimensions") as exc:
        resolve_profiles([X, K], [parse_profile("k:1")])
    assert "k=1:1:1" in exc.value.hint
    with pytest.raises(TegraAIError, match="'x' is not a shape tensor; values are for shape-tensor inputs"):
        resolve_profiles([X, K], [parse_profile("x=1x4,k=1")])
    with pytest.raises(TegraAIError, match=r"holds 2 value\(s\), --shapes gives 1"):
        resolve_profiles([ModelInput("t", (2,), "int64", shape_tensor=True)], [parse_profile("t=1:2:3")])


def test_host_check_knows_only_that_a_float_input_is_no_shape_tensor():
    """Without TensorRT (tensorrt-optimize check/bundle on the host) whether an integer input
    is a shape tensor is unknown: its values are accepted; a float input's are refused."""
    host_k, host_x = ModelInput("k", (), "int64"), ModelInput("x", (1, 4), "float32")
    assert resolve_profiles([host_x, host_k], [parse_profile("k=1:5:10")])[0][1].values
    with pytest.raises(TegraAIError, match="'x' is a float32 input"):
        resolve_profiles([host_x, host_k], [parse_profile("x=1x4")])
