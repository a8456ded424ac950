"""One CLI grammar (issue #16 part 2): -v/--verbose and --json after every subcommand,
--version on every console script, one name per concept with the old spellings kept as
hidden aliases (a notice on stderr), and the per-command output rules (check, publish)."""

import argparse
import contextlib
import io

import pytest

from tegra_ai import __version__
from tegra_ai.cli import benchmark, calibration, ensemble, optimize


def _parsers():
    """Every (name, parser) a user reaches: each tensorrt-optimize subcommand, model-benchmark
    and its suite, calibration-dataset, model-ensemble."""
    top = optimize.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    found = [("tensorrt-optimize " + n, p) for n, p in sub.choices.items()]
    found += [("model-benchmark", benchmark.build_run_parser()), ("model-benchmark suite", benchmark.build_suite_parser()),
              ("calibration-dataset", calibration.build_parser()), ("model-ensemble", ensemble.build_parser())]
    return found


PARSERS = _parsers()


@pytest.mark.parametrize("name,parser", PARSERS, ids=[n for n, _ in PARSERS])
def test_every_command_has_verbose_and_json(name, parser):
    strings = {s for a in parser._actions for s in a.option_strings}
    assert {"-v", "--verbose", "--json"} <= strings, name


@pytest.mark.parametrize("argv", [
    ["quantize", "m.onnx", "--calibration", "d.npz", "-o", "o.onnx", "-v"],
    ["convert-fp16", "m.onnx", "-o", "o.onnx", "--verbose"],
    ["compare", "a.onnx", "b.onnx", "--data", "d.npz", "-v"],
    ["check", "m.onnx", "-v"],
])
def test_verbose_after_the_subcommand(argv):
    assert optimize.build_parser().parse_args(argv).verbose is True


@pytest.mark.parametrize("main", [optimize.main, benchmark.main, calibration.main, ensemble.main],
                         ids=["tensorrt-optimize", "model-benchmark", "calibration-dataset", "model-ensemble"])
def test_version_on_every_console_script(main):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and out.getvalue().split() [-1] == __version__


# (parser, argv before, old spelling, new spelling, value, dest)
RENAMES = [
    (calibration.build_parser, ["x.npz", "-o", "o.npz"], "--count", "--max-samples", "5", "max_samples", 5),
    (ensemble.build_parser, ["e.json"], "--limit", "--max-samples", "6", "max_samples", 6),
    (ensemble.build_parser, ["e.json"], "--engine-cache", "--cache", "c", "cache", "c"),
    (lambda: optimize.build_parser(), ["quantize", "m.onnx", "--calibration", "d.npz", "-o", "o.onnx"],
     "--report", "--markdown", "r.md", "markdown", "r.md"),
]


@pytest.mark.parametrize("make,argv,old,new,text,dest,value", RENAMES, ids=[r[2] for r in RENAMES])
def test_old_spelling_is_a_hidden_alias(make, argv, old, new, text, dest, value, capsys):
    assert getattr(make().parse_args(argv + [new, text]), dest) == value
    assert capsys.readouterr().err == ""
    assert getattr(make().parse_args(argv + [old, text]), dest) == value
    assert f"{old} is now {new}" in capsys.readouterr().err
    assert getattr(make().parse_args(argv), dest) is None      # the alias does not override the default
    parser = make()
    if argv and argv[0] == "quantize":
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["quantize"]
    helptext = parser.format_help()
    assert new in helptext and old not in helptext


def test_compare_and_quantize_share_the_report_flag():
    sub = next(a for a in optimize.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("quantize", "compare"):
        assert "--markdown" in sub.choices[name].format_help()
        assert "--report" not in sub.choices[name].format_help()


def test_check_notes_only_the_operators_the_model_has(model_factory):
    from tegra_ai.onnx_tools.check import check_model
    from tegra_ai.onnx_tools.targets import resolve_target

    from onnx import helper

    # Conv, Relu and Dropout; TensorRT 10.3's operator table has notes for Dropout (and for
    # MaxPool, Resize, Slice, ... which the model does not have)
    model = model_factory(input_dims=(1, 3, 16, 16), extra_nodes=[helper.make_node("Dropout", ["output"], ["d"])])
    report = check_model(model, resolve_target("jetpack6"), use_parser=False)
    noted = [f.message.split(":")[0] for f in report.findings if f.code == "operator-notes"]
    assert noted == ["Dropout"], noted
