"""Planted bugs: small, realistic mutations of the library, each with the tests that must
catch it (run by tests/mutants/planted.py; the guard is tests/mutants/test_planted.py).

Each entry names a *behaviour* (what a user would suffer), then where it lives today:
``file`` (path in the installed package: the top-level cli/ folder is ``dymu_rt/cli/``), a
short ``snippet`` that must occur exactly once in that file, its ``replacement``, and the
``tests`` (pytest node ids / file paths, or ``-k`` expressions) that must fail on it.

When code moves (a module split, a rename), the guard fails with "stale mutant NAME" and
says where the snippet is now, if anywhere: point ``file`` at the new home, or rewrite the
snippet so it plants the same bug in the new code. Never delete an entry to make the guard
pass; if the behaviour is gone, say so in the commit. See docs/testing.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    behaviour: str
    file: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]
    cost_s: float = 10.0        # measured run time (scheduling only: slowest first)


M = Mutant
FOLD_REF = "tests/models/test_fold_reference.py"
PREF = "tests/control/test_control_preference.py"
HOSTILE = "tests/security/test_hostile_bundles.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- BN folding (issue 28 problem 5) -------------------------------------------------------
    M("fold-no-sqrt", "BN fold divides by var + eps instead of its square root",
      "dymu_rt/core/bn_fold.py", "scale = gamma / (bn_var + eps) ** 0.5", "scale = gamma / (bn_var + eps)",
      (FOLD_REF,), 8),
    M("fold-eps-dropped", "BN fold drops epsilon: gamma / sqrt(var)",
      "dymu_rt/core/bn_fold.py", "scale = gamma / (bn_var + eps) ** 0.5", "scale = gamma / bn_var ** 0.5",
      (FOLD_REF,), 8),
    M("fold-mean-not-subtracted", "BN fold forgets the running mean in the bias",
      "dymu_rt/core/bn_fold.py", "b0 = -bn_mean if conv_bias is None else conv_bias - bn_mean",
      "b0 = 0 * bn_mean if conv_bias is None else conv_bias", (FOLD_REF,), 8),
    M("bind-delta-beta-offset", "binding reads the weight hypernet's delta-beta from delta-gamma's place",
      "dymu_rt/core/bn_fold.py", "deltas[o + c:o + 2 * c]", "deltas[o:o + c]", (FOLD_REF,), 8),
    M("weight-pool-scale-no-sqrt", "weight pool's anchor BN scale gamma / (var + eps) without the root",
      "dymu_rt/bundle/weight_pool.py", "(gamma / np.sqrt(var + np.float32(eps)))", "(gamma / (var + np.float32(eps)))",
      (f"{FOLD_REF}::test_weight_pool_anchor_scale_is_gamma_over_sqrt_var_plus_eps",), 6),
    # -- preferences and selection ---------------------------------------------------------------
    M("nearest-grid-farthest", "nearest-grid fallback picks the farthest grid point",
      "dymu_rt/core/preference.py", "        if d < best_d:\n", "        if best < 0 or d > best_d:\n",
      (f"{PREF}::test_nearest_uses_l1_on_r_plus_abs_dc",), 6),
    M("nearest-grid-binds-requested-weights", "a preference whose tree is not in the bundle runs the nearest "
      "grid point's tree with the requested preference's BN deltas instead of that grid point's",
      "dymu_rt/core/selector.py",
      "return Selection(self.point_topologies[i], NEAREST_GRID, self.points[i], self.points[i])",
      "return Selection(self.point_topologies[i], NEAREST_GRID, pref, self.points[i])",
      ("tests/control/test_selector.py::test_unknown_topology_falls_back_to_the_nearest_grid_point_and_its_weights",),
      4),
    M("r-not-normalized", "--normalize rescales by the largest entry but never divides by the sum",
      "dymu_rt/core/preference.py", "return tuple(v / total for v in scaled)", "return tuple(scaled)",
      (f"{PREF}::test_parse_r_normalize_rescales_but_still_refuses_nonsense",), 6),
    M("r-sum-unchecked", "an r that does not sum to 1 is accepted",
      "dymu_rt/core/preference.py", "if abs(total - 1.0) > SUM_TOLERANCE:", "if False:",
      (f"{PREF}::test_parse_r_sum_error_names_value_sum_and_n",), 6),
    # -- evaluation ------------------------------------------------------------------------------
    M("delta-t-sign-lower-is-better", "Delta_T ignores that lower is better for errors",
      "dymu_rt/tasks/relative.py", "sign = 1.0 if dirs[m] else -1.0", "sign = 1.0",
      ("tests/evaluate/test_delta_t.py",), 6),
    M("hv-reference-ignored", "hypervolume counts points beyond the reference point",
      "dymu_rt/evaluate/hypervolume.py", "inside = np.all(p < ref, axis=1)", "inside = np.all(np.isfinite(p), axis=1)",
      ("tests/evaluate/test_hypervolume_edges.py::test_points_beyond_the_reference_add_nothing",), 6),
    # -- bundle integrity ------------------------------------------------------------------------
    M("checksum-not-verified", "an edited manifest is read without noticing the checksum mismatch",
      "dymu_rt/bundle/checksum.py", "if canonical_digest(manifest) not in digests:", "if False:",
      (HOSTILE, "-k", "edited"), 25),
    M("path-escape-unchecked", "a bundle path that resolves outside the bundle is accepted",
      "dymu_rt/bundle/paths.py", 'if not (real == base or real.startswith(base.rstrip("/") + "/")):', "if False:",
      ("tests/bundle/test_bundle_paths.py",), 6),
    M("path-links-followed", "symbolic links inside a bundle are followed",
      "dymu_rt/bundle/paths.py", "if stat.S_ISLNK(st.st_mode):", "if False:",
      ("tests/bundle/test_bundle_paths.py::test_links_are_refused",), 6),
    M("path-dotdot-allowed", "a '..' part in a bundle-relative path passes the name check",
      "dymu_rt/bundle/paths.py", "_PART_RE = re.compile(r\"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\")",
      "_PART_RE = re.compile(r\"[A-Za-z0-9_.][A-Za-z0-9._-]{0,127}\")",
      ("tests/bundle/test_bundle_paths.py",), 6),
    M("lock-not-taken", "concurrent writers of one bundle do not take the file lock",
      "dymu_rt/bundle/lock.py", "fcntl.flock(fd, fcntl.LOCK_EX)", "pass", ("tests/security/test_concurrent_writers.py",), 40),
    # -- precision -------------------------------------------------------------------------------
    M("int8-scale-off-by-one-bit", "INT8 weight scale uses the uint8 range (255) instead of 127",
      "dymu_rt/backends/precision.py", "amax / spec.qmax", "amax / (2 * spec.qmax + 1)",
      ("tests/backends/test_precision_graphs.py::test_qdq_mapping_reproduces_quantized_weights",), 12),
    M("int8-check-accepts-zeros", "dymu-rt check's INT8 tolerance (rtol 1) passes an all-zero output",
      "dymu_rt/app/check.py", '"int8": (1.0, 0.5)', '"int8": (1.0, 1.0)',
      ("tests/cli/test_cli_check.py", "-k", "default_tolerances and numpy"), 8),
    M("int8-batch-symbol-shared", "the affine BN scale/shift inputs share the image's batch symbol: "
      "ONNX Runtime's INT8 session crashes on a batch of 2 (dymu-rt check --scenes 2)",
      "dymu_rt/backends/affine.py", 'AFFINE_BATCH = "pref_batch"', 'AFFINE_BATCH = "batch"',
      ("tests/cli/test_cli_check_int8.py::test_int8_batch_of_two_equals_each_image_alone",), 15),
    # -- runtime and pictures (issue 28 problem 2) ------------------------------------------------
    M("swapped-task-outputs", "the runtime hands task outputs under each other's names",
      "dymu_rt/backends/onnxruntime.py", "return dict(zip(self.output_names, outs))",
      "return dict(zip(self.output_names, outs[::-1]))",
      ("tests/runtime/test_runtime_preference.py", "-k", "test_exact_binding_matches_reference"), 15),
    M("rgb-channel-order", "images are fed as BGR instead of RGB",
      "dymu_rt/runtime/preprocess.py", "return np.ascontiguousarray(x.transpose(2, 0, 1))",
      "return np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1))",
      ("tests/runtime/test_runtime_preprocess.py",), 8),
    M("seg-picture-channels-reversed", "segmentation picture takes the argmax over reversed class channels",
      "dymu_rt/core/kinds.py", "return self._check_out(out, 3).argmax(axis=0).astype(np.int64)",
      "return self._check_out(out, 3)[::-1].argmax(axis=0).astype(np.int64)",
      ("tests/runtime/test_run_pictures.py",), 10),
    M("depth-picture-zeros", "depth picture drawn from zeros instead of the predicted depth",
      "dymu_rt/core/kinds.py", "return np.clip(self._check_out(out, 3)[0], 0.0, None)",
      "return np.zeros_like(self._check_out(out, 3)[0])", ("tests/runtime/test_run_pictures.py",), 10),
    M("normals-picture-zeros", "normals picture drawn from zeros",
      "dymu_rt/core/kinds.py", "return np.where(n > 0, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)",
      "return np.zeros_like(v, dtype=np.float32)", ("tests/runtime/test_run_pictures.py",), 10),
    # -- training (issue 28 problem 1) -----------------------------------------------------------
    M("optimizer-never-steps", "training computes gradients but never steps the optimizer",
      "dymu_rt/training/setup.py", "        scaler.step(o)\n", "        pass\n",
      ("tests/train/test_training_learns.py::test_anchor_and_static_methods_learn_in_every_stage",), 60),
    M("fp16-inf-step-not-skipped", "with several optimizers on one loss, an inf gradient still steps the others",
      "dymu_rt/training/setup.py", "        if not finite:\n", "        if False:\n",
      ("tests/train/test_fp16_scaler_cpu.py",), 8),
    M("fp16-scaler-state-lost", "the fp16 loss scale is not restored on resume",
      "dymu_rt/training/setup.py", "        scaler.load_state_dict(meta)\n", "        pass\n",
      ("tests/train/test_fp16_scaler_cpu.py::test_scaler_state_survives_a_json_round_trip",), 8),
    M("cuda-event-order", "GPU compute time measured from the end event to the start event",
      "dymu_rt/backends/tensorrt/cuda.py", "start._event.time_till(self._event)", "self._event.time_till(start._event)",
      ("tests/backends/test_device_timing_fake.py",), 8),
    M("regularizer-ignores-c", "stage 1's sharing term is not weighted by the resource preference c",
      "dymu_rt/control/regularizer.py", "c * config.lambda_active * l_active", "config.lambda_active * l_active",
      ("tests/train/test_training_learns.py::test_stage_1_cost_falls_with_c_on_a_problem_built_so_that_it_must",), 30),
    M("weight-hypernet-never-steps", "stage 2 (weight hypernet) computes its loss but never updates",
      "dymu_rt/training/controller.py", "            backward_step(loss, stage.opt, stage.scaler)\n",
      "            stage.opt.zero_grad()\n",
      ("tests/train/test_training_learns.py::test_controller_stages_learn",), 45),
    M("threads-ignored", "--threads is validated but never applied to torch",
      "dymu_rt/training/common.py", "    torch.set_num_threads(threads)\n", "    pass\n",
      ("tests/cli/test_cli_threads.py::test_threads_sets_torch_threads",), 6),
)
