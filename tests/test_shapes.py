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
