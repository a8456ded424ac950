"""model-benchmark gives N streams enough CUDA hardware queues (measured: without it the
harness flattened at 3.9x from 4 streams on an H100)."""

from tegra_ai.bench.harness import CONNECTIONS_ENV, prepare_streams


def test_multi_stream_sets_connections_when_unset():
    env = {}
    assert prepare_streams(4, env) == "32" and env[CONNECTIONS_ENV] == "32"


def test_single_stream_and_user_choice_are_left_alone():
    env = {}
    assert prepare_streams(1, env) is None and CONNECTIONS_ENV not in env
    env = {CONNECTIONS_ENV: "4"}
    assert prepare_streams(16, env) == "4"
