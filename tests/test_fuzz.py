"""Fuzzing (hypothesis) the target grammar, the run configuration and the command line: any input
either works or is refused with one line (exit 2 / UserInputError), never an internal error."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pplevelset as pls
from pplevelset.cli import main
from pplevelset.infer.config import RunConfig, check_float32
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.targets import parse_target

CLASSES = ("a", "b", "c")
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-300, 1e-46, 1e-38, 1e39]),
    st.integers(-3, 3).map(float),
)
number_text = st.one_of(numbers.map(repr), numbers.map(lambda v: f"{v:g}"), st.text(max_size=6))
entry = st.one_of(number_text, st.tuples(st.sampled_from([*CLASSES, "d", ""]), number_text).map("=".join))
targets = st.one_of(
    st.sampled_from(["ambiguous", "AMBIGUOUS", "", " ", ",", "a=", "=0.5", "a=0.5,a=0.5"]),
    st.lists(entry, min_size=1, max_size=4).map(",".join),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(targets)
def test_the_target_grammar_parses_or_refuses_in_one_line(spec):
    try:  # the grammar, then the run configuration's float32 check (a target entry that rounds to 0)
        vector = parse_target(spec, CLASSES)
        check_float32(10.0, vector, CLASSES)
    except pls.UserInputError as exc:
        assert "\n" not in str(exc)
        return
    assert vector.shape == (3,) and torch.isfinite(vector).all() and (vector > 0).all()
    assert abs(float(vector.sum()) - 1) < 1e-5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=targets,
    alpha=numbers,
    seed=st.one_of(st.integers(-2, 2**64 + 2), st.floats()),
    particles=st.one_of(st.integers(-1, 40), st.floats(0, 10)),
)
def test_an_accepted_configuration_has_a_finite_density_at_its_start(target, alpha, seed, particles):
    try:
        config = RunConfig.build("toy", target, alpha=alpha, seed=seed, num_particles=particles, progress=False)
    except pls.UserInputError as exc:
        assert "\n" not in str(exc)
        return
    density = ParticleDensity(level_set_model, (config.world, config.target, config.alpha, config.num_particles))
    with torch.random.fork_rng():
        scored = density(density.sample_prior())
    assert torch.isfinite(scored.log_prior + scored.log_likelihood).all()


option_values = {
    "--alpha": st.one_of(numbers.map(repr), st.sampled_from(["x", "1e39", "1e-46", "-0"])),
    "--particles": st.sampled_from(["0", "1", "2", "7", "2.5", "x", "-3"]),
    "--warmup": st.sampled_from(["0", "1", "-1", "x"]),
    "--steps": st.sampled_from(["0", "1", "2", "x"]),
    "--thin": st.sampled_from(["0", "1", "3"]),
    "--keep": st.sampled_from(["0", "1", "4", "-2"]),
    "--seed": st.sampled_from(["0", "-1", str(2**32), str(2**63 - 1), str(2**63), str(2**64), "1.5"]),
    "--kernel": st.sampled_from(["rwmh", "ensemble", "smc", "gibbs", ""]),
    "--device": st.sampled_from(["cpu", "mps", "cuda:9", "nonsense"]),
    "--populations": st.sampled_from(["1", "2", "3", "0"]),
    "--moves": st.sampled_from(["1", "0"]),
    "--checkpoint-every": st.sampled_from(["1", "0", "2s", "-1s", "nans", "infs"]),
}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    target=targets,
    options=st.dictionaries(st.sampled_from(sorted(option_values)), st.just(None), max_size=5),
    data=st.data(),
)
def test_the_command_line_runs_or_exits_2_with_one_line(tmp_path_factory, capsys, target, options, data):
    argv = ["sample", "toy", f"--target={target}", "--particles", "8", "--warmup", "2", "--steps", "2", "--quiet"]
    for name in options:
        argv.append(f"{name}={data.draw(option_values[name], label=name)}")
    out = tmp_path_factory.mktemp("fuzz") / "run"
    code = main([*argv, "--out", str(out)])
    captured = capsys.readouterr()
    assert code in (0, 2), (argv, captured.err)
    assert "Traceback" not in captured.err + captured.out
    if code == 2:
        assert len(captured.err.strip().splitlines()) == 1, captured.err
        assert not out.exists() and not list(out.parent.iterdir())
    else:
        assert (out / "summary.json").is_file()
