"""``--precision auto``: what it picks for given CPU flags and GPUs, the /proc/cpuinfo reader, and
one tiny real training run that records the resolved policy (the module takes about 20 s)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from test_train import SIZE, tiny, write_camvid  # noqa: E402

from unet_course.datasets import CAMVID  # noqa: E402
from unet_course.train import (  # noqa: E402
    PRECISIONS,
    TrainConfig,
    build_model,
    choose_precision,
    load_checkpoint,
    parse_args,
    resolve_precision,
    train,
)
from unet_course.processor import cpu_name, read_cpu_flags  # noqa: E402

ZEN3 = {"fpu", "sse4_2", "avx", "avx2", "fma", "bmi2", "sha_ni", "vaes"}  # AMD Zen 3: AVX2 only
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}

# Abridged /proc/cpuinfo of a two-thread AMD EPYC Zen 3 (note the "vmx flags"-style lines that also
# end in "flags", and that every processor repeats its flags).
CPUINFO_ZEN3 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2
power management:

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes
"""
CPUINFO_ZEN4 = CPUINFO_ZEN3.replace("AMD EPYC 7763", "AMD EPYC 9R14").replace(
    "vaes", "vaes avx512f avx512bw avx512_bf16 avx512_vnni")
CPUINFO_SPR = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only
"""
CPUINFO_ARM = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm
CPU implementer\t: 0x41
"""


# --- the choice, for given flags --------------------------------------------------------------------


def test_avx2_only_cpu_like_zen3_trains_in_float32():
    policy, reason = choose_precision(ZEN3, gpus=0)
    assert policy == "float32"
    assert "no native bf16" in reason and "avx512_bf16" in reason and "amx_bf16" in reason
    assert "emulated" in reason and reason.startswith("auto:")


@pytest.mark.parametrize("flags, named", [
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512_bf16"),  # Zen 4, Cooper Lake
    ({"avx512f", "avx512_bf16"}, "avx512_bf16"),
    ({"amx_bf16", "amx_tile"}, "amx_bf16"),  # Sapphire Rapids and later
    (SAPPHIRE_RAPIDS, "amx_bf16"),  # both: AMX is named
])
def test_native_bf16_cpu_trains_in_mixed_bfloat16(flags, named):
    policy, reason = choose_precision(flags, gpus=0)
    assert policy == "mixed_bfloat16"
    assert reason == f"auto: the CPU has {named}, native bf16"


@pytest.mark.parametrize("flags", [set(), ZEN3, SAPPHIRE_RAPIDS])
def test_a_gpu_means_mixed_float16_whatever_the_cpu(flags):
    policy, reason = choose_precision(flags, gpus=1)
    assert policy == "mixed_float16" and "1 GPU" in reason
    assert choose_precision(flags, gpus=4) == ("mixed_float16", "auto: TensorFlow sees 4 GPUs; float16 runs natively there")


@pytest.mark.parametrize("isa, policy", [
    ("AVX2", "float32"), ("avx512_core", "float32"), ("AVX512_CORE_VNNI", "float32"),  # oneDNN kept below bf16
    ("AVX512_CORE_BF16", "mixed_bfloat16"), ("AVX512_CORE_AMX", "mixed_bfloat16"), ("ALL", "mixed_bfloat16"),
    ("", "mixed_bfloat16"), (None, "mixed_bfloat16"),
])
def test_a_onednn_isa_cap_below_bf16_means_float32_even_on_a_bf16_cpu(isa, policy, monkeypatch):
    """ONEDNN_MAX_CPU_ISA caps TensorFlow's CPU kernels: under AVX512_CORE_BF16 they emulate bf16."""
    assert choose_precision(SAPPHIRE_RAPIDS, gpus=0, onednn_max_isa=isa)[0] == policy
    if isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    chosen, reason = resolve_precision("auto", cpu_flags=SAPPHIRE_RAPIDS, gpus=0)
    assert chosen == policy
    assert ("ONEDNN_MAX_CPU_ISA" in reason) == (policy == "float32")
    assert choose_precision(ZEN3, gpus=0, onednn_max_isa=isa)[0] == "float32"


def test_no_flags_at_all_macos_or_windows_means_float32():
    assert choose_precision(set(), gpus=0)[0] == "float32"
    assert choose_precision(frozenset({"neon", "bf16"}), gpus=0)[0] == "float32"  # ARM bf16 is not counted


def test_explicit_precisions_pass_through_and_say_when_they_will_be_slow():
    assert resolve_precision("float32", ZEN3, 0) == ("float32", "as requested")
    assert resolve_precision("mixed_bfloat16", SAPPHIRE_RAPIDS, 0) == ("mixed_bfloat16", "as requested")
    policy, reason = resolve_precision("mixed_bfloat16", ZEN3, 0)
    assert policy == "mixed_bfloat16" and "no native bf16" in reason and "slower than float32" in reason
    policy, reason = resolve_precision("mixed_float16", SAPPHIRE_RAPIDS, 0)
    assert policy == "mixed_float16" and "no GPU" in reason
    assert resolve_precision("mixed_float16", ZEN3, 1) == ("mixed_float16", "as requested")
    assert resolve_precision("auto", ZEN3, 0)[0] == "float32"
    assert resolve_precision("auto", ZEN3, 2)[0] == "mixed_float16"
    with pytest.raises(ValueError, match="unknown precision 'bfloat16'"):
        resolve_precision("bfloat16", ZEN3, 0)


def test_command_line_default_is_auto_and_offers_every_policy():
    assert TrainConfig().precision == "auto" and parse_args(["--out", "x"]).precision == "auto"
    assert set(PRECISIONS) == {"auto", "float32", "mixed_bfloat16", "mixed_float16"}
    for name in PRECISIONS:
        assert parse_args(["--out", "x", "--precision", name]).precision == name
    with pytest.raises(ValueError, match="resolved precision"):
        build_model(TrainConfig(image_size=SIZE, n_filters=4), CAMVID.n_classes)  # "auto" must be resolved first


# --- the flags of a real /proc/cpuinfo text ---------------------------------------------------------


def test_reads_flags_from_cpuinfo_text():
    zen3 = read_cpu_flags(CPUINFO_ZEN3)
    assert {"avx2", "fma", "sse4_2", "vaes"} <= zen3 and "avx512_bf16" not in zen3
    assert "preemption_timer" not in read_cpu_flags(CPUINFO_SPR)  # "vmx flags" is another line
    assert choose_precision(zen3, 0)[0] == "float32"
    assert choose_precision(read_cpu_flags(CPUINFO_ZEN4), 0) == ("mixed_bfloat16", "auto: the CPU has avx512_bf16, native bf16")
    assert choose_precision(read_cpu_flags(CPUINFO_SPR), 0) == ("mixed_bfloat16", "auto: the CPU has amx_bf16, native bf16")
    assert "bf16" in read_cpu_flags(CPUINFO_ARM) and choose_precision(read_cpu_flags(CPUINFO_ARM), 0)[0] == "float32"
    assert read_cpu_flags("") == set() and read_cpu_flags("processor\t: 0\n") == set()


def test_names_the_processor_from_cpuinfo_text():
    """The benchmarks name the processor their numbers come from."""
    assert cpu_name(CPUINFO_SPR) == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu_name(CPUINFO_ZEN3) == "AMD EPYC 7763 64-Core Processor"
    assert cpu_name("processor\t: 0\n")  # no model name line: what the platform says, never empty


def test_reads_this_machines_flags():
    flags = read_cpu_flags()
    if os.path.exists("/proc/cpuinfo") and os.uname().machine in ("x86_64", "AMD64"):
        assert "sse2" in flags  # every x86-64 CPU has it
    assert isinstance(flags, set)


# --- real runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def camvid_dir(tmp_path_factory):
    return write_camvid(tmp_path_factory.mktemp("camvid"), splits=(("train", 8), ("val", 4)))


def test_tiny_auto_run_records_the_resolved_policy_and_says_why(tmp_path, camvid_dir):
    expected, why = choose_precision(read_cpu_flags(), len(tf.config.list_physical_devices("GPU")))
    out = tmp_path / "run"
    config = tiny(out, camvid_dir, epochs=1, precision="auto", plots=False, tensorboard=False, export=False)
    metrics = train(config)
    assert config.precision == "auto"  # the caller's config is left as it was
    saved = json.loads((out / "metrics.json").read_text())
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert saved["config"]["precision"] == state["config"]["precision"] == metrics["config"]["precision"] == expected
    assert saved["precision_choice"] == {"requested": "auto", "policy": expected, "reason": why}
    log = (out / "train.log").read_text()
    assert f"precision: {expected} ({why})" in log
    assert f"batch 4, {expected}, jit=False" in log
    assert saved["epochs_done"] == 1 and np.isfinite(saved["val_miou"])


def test_checkpoint_loads_across_mixed_float16_loss_scaling(tmp_path):
    """A float32/bf16 checkpoint resumes under mixed_float16 (a GPU) and back with its Adam state,
    although mixed_float16 wraps the optimizer in a LossScaleOptimizer."""
    rng = np.random.default_rng(0)

    def compiled(precision):
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision)
        try:
            model = build_model(TrainConfig(image_size=SIZE, n_filters=4, precision=precision), CAMVID.n_classes)
            model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.optimizer.build(model.trainable_variables)
        finally:
            keras.mixed_precision.set_global_policy(previous)
        return model

    def adam(model):
        return getattr(model.optimizer, "inner_optimizer", model.optimizer)

    for source, target in (("float32", "mixed_float16"), ("mixed_float16", "mixed_bfloat16")):
        saved = compiled(source)
        for v in adam(saved).variables:  # an optimizer state as after 7 steps (no step traced: fast)
            v.assign(7 if v.dtype.startswith("int") else rng.normal(size=v.shape).astype(v.dtype))
        saved.save_weights(tmp_path / f"{source}.weights.h5")
        resumed = compiled(target)
        assert isinstance(resumed.optimizer, keras.optimizers.LossScaleOptimizer) == (target == "mixed_float16")
        load_checkpoint(resumed, tmp_path / f"{source}.weights.h5")
        assert int(adam(resumed).iterations.numpy()) == 7
        assert len(adam(saved).variables) == len(adam(resumed).variables)
        for a, b in zip(adam(saved).variables, adam(resumed).variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(saved.get_weights(), resumed.get_weights()):
            np.testing.assert_array_equal(a, b)
