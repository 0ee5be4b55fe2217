"""pytest's hooks and fixtures: the fast tier's SLOW list, the matrix's summary, the demo's
trained tree, real volumes for fault tests. The shared helpers are in tests/support.py."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

# Before XGBoost's OpenMP runtime loads here or in any process a test starts: threads waiting
# for work sleep instead of spinning. Two test files run at a time on two cores, each XGBoost
# using both, and spinning threads took the cores from the threads with work: a 3-class resume
# test took 90 s beside two busy processes, 25 s with this (13 s alone). Results do not change;
# only idle threads behave differently.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from support import REPO, run_train  # noqa: E402


# The fast tier (./tests/run.sh --fast, pytest -m "not slow") leaves these out: each took 3 s or
# more (its setup included) in a full run on a quiet 2-core machine (pytest --durations=0). What
# they test is still touched by a faster test of the same module; CI runs everything.
SLOW = {
    "test_direct_path.py": (
        "test_request_threads_answer_as_the_loop_does",
        "test_multi_model_requests_together_each_get_their_models_answer",
    ),
    # the SDK's own virtual environment (made on first use) and three servers
    "test_sagemaker_sdk.py": (
        "test_the_sdks_predictor_invokes_each_target_model_as_served_alone",
        "test_the_sdks_record_deserializer_reads_the_selectable_answers",
    ),
    "test_multi_model.py": (
        "test_the_server_settings_reach_every_loaded_model",
        "test_a_model_that_does_not_fit_is_507_until_another_is_unloaded",
        "test_no_request_fails_when_another_worker_unloads_its_model",
    ),
    "test_libsvm.py": (
        "test_without_accept_the_default_is_json_or_sagemaker_default_invocations_accept",
        "test_the_builtin_shape_with_three_classes_from_libsvm",
        "test_the_builtin_shape_with_per_row_costs",
        "test_sharded_libsvm_hosts_train_on_the_widest_hosts_columns",
    ),
    "test_report.py": (
        "test_edge_cases_say_so_and_do_not_warn",
    ),
    "test_multiclass.py": (
        "test_the_penalty_lowers_the_favourable_decisions_dppl",
    ),
    "test_calibration.py": (
        "test_a_model_trained_with_168_to_1_weights_gives_probabilities_held_out_rows_bear_out",
    ),
    "test_checkpoints.py": (
        "test_three_classes_resume_equal_to_an_uninterrupted_run",
        "test_sigterm_without_checkpointing_is_still_a_failure",
        "test_a_checkpoint_of_other_settings_or_data_is_refused",
        "test_resume_from_an_older_checkpoint_when_the_newest_is_corrupt",
        "test_resumed_training_equals_an_uninterrupted_run",
        "test_sigterm_to_train_checkpoints_and_a_rerun_resumes_exactly",
    ),
    "test_combinations.py": (
        "test_sweep",
        "test_tune",
    ),
    "test_data_capture.py": (
        "test_a_full_disk_never_fails_a_request_and_each_reason_is_logged_once",
        "test_percentage_zero_captures_nothing",
    ),
    "test_demo_table.py": (
        "test_the_readme_demo_table_is_what_the_demo_prints",
    ),
    "test_fairness_training.py": (
        "test_a_test_channel_without_facet_d_has_undefined_bias_metrics",
        "test_bias_section_matches_smclarify_on_the_models_predictions",
        "test_constrained_rules",
        "test_multiclass_labels_collapsed_by_clarifys_rule",
        "test_parity_penalty_narrows_the_gap",
    ),
    "test_multiclass_serving.py": (
        "test_integer_labels_by_default_with_the_matrix_size",
        "test_a_cell_read_per_row_is_trained_and_served_at_each_rows_own_matrix",
        "test_a_bad_per_row_cost_is_refused_naming_row_and_column",
        "test_a_bound_on_the_favourable_rate_end_to_end",
        "test_a_two_by_two_matrix_is_the_binary_costs",
        "test_bias_on_the_favourable_classes_end_to_end",
        "test_csv_answers_read_back_as_the_json_answers",
        "test_training_logs_every_round_and_saves_the_confusion_matrix",
    ),
    "test_multiclass_tuning.py": (
        "test_local_tuner_on_a_multiclass_tree",
    ),
    "test_multihost.py": (
        "test_three_classes_on_two_hosts_report_the_metrics_of_all_their_rows",
        "test_a_host_that_dies_while_training_fails_the_others_with_a_one_line_reason",
        "test_a_host_without_train_files_drops_out_as_in_the_built_in_container",
        "test_a_peer_that_never_comes_fails_within_the_peer_timeout",
        "test_a_validation_shard_without_files_is_an_empty_share",
        "test_an_unresolvable_host_name_fails_with_the_name",
        "test_bad_data_on_one_host_fails_every_host_with_its_reason",
        "test_cross_fitting_on_two_hosts",
        "test_hosts_train_one_model_with_the_single_host_metrics",
        "test_sampled_rounds_and_the_parity_penalty_on_three_hosts",
        "test_validation_files_on_a_host_without_train_files_fail_the_job",
    ),
    "test_objective.py": (
        "test_symmetric_loss_is_the_unweighted_builtin",
        "test_training_grows_the_builtin_logistic_trees_with_sample_weights_and_base_margins",
    ),
    "test_reasons.py": (
        "test_bad_reason_texts_fail_with_one_line",
        "test_contributions_add_up_to_the_margin",
        "test_mean_contributions_per_channel_and_facet",
        "test_reason_texts_are_saved_and_served",
        "test_the_docs_german_credit_tables_are_what_the_script_prints",
    ),
    "test_robustness.py": (
        "test_a_model_damaged_after_the_start_leaves_the_loaded_workers_serving",
        "test_a_replaced_worker_gets_kept_alive_clients_again",
        "test_fuzz_csv",
        "test_fuzz_json",
        "test_fuzz_jsonlines",
        "test_fuzz_random_bodies_and_headers",
        "test_fuzz_valid_rows_answer_like_in_process_prediction",
        "test_killed_worker_loses_only_its_requests",
        "test_load_zero_errors_and_flat_worker_memory",
        "test_sigterm_under_load_finishes_in_flight_requests_and_exits_0",
        "test_stalled_and_slow_clients_cost_only_their_own_connections",
    ),
    "test_serving.py": (
        "test_ping_answers_json",
        "test_sigterm_drains_in_flight_request",
    ),
    "test_serving_costs.py": (
        "test_a_binary_cost_matrix_naming_columns_is_the_cost_column_hyperparameters",
        "test_a_constrained_model_refuses_overrides_and_needs_the_facet",
        "test_an_override_leaves_rows_with_their_own_costs_as_they_were",
        "test_the_command_line_decides_rows_at_their_own_costs",
        "test_the_command_line_fails_with_one_line",
        "test_the_model_states_its_request_layout",
    ),
    "test_train_entrypoint.py": (
        "test_a_facet_that_is_a_feature_of_a_headerless_file_is_asked_for_once",
        "test_a_one_class_test_channel_saves_the_model_with_undefined_metrics_as_null",
        "test_a_regret_that_rounds_below_zero_is_zero_not_a_negative_weight",
        "test_bad_input_writes_a_one_line_failure",
        "test_calibration_on_the_validation_channel",
        "test_early_stopping_on_held_out_log_loss_and_the_round_0_warning",
        "test_header_csv_gzip_parquet_and_per_row_costs",
        "test_quoted_commas_and_blank_lines_are_not_ragged",
        "test_ragged_rows_are_refused_naming_file_line_and_both_counts",
        "test_text_labels_and_facets_with_value_lists",
        "test_without_validation_cross_fits_the_train_channel",
    ),
    "test_train_faults.py": (
        "test_a_corrupt_booster_file_is_named_with_what_is_wrong",
        "test_a_full_model_volume_is_a_one_line_reason",
        "test_a_full_volume_under_model_and_output_fails_the_job",
        "test_a_rerun_leaves_only_its_own_outcome",
    ),
    "test_tuning.py": (
        "test_objective_regex_finds_the_metric_in_a_real_training_log",
        "test_sweep_prices_every_ratio_with_the_trees_costs",
        "test_sweep_varies_a_two_by_two_cost_matrix_in_that_form",
        "test_sweep_with_a_facet_and_a_bound",
        "test_tune_multi_objective_then_resume",
        "test_tune_without_a_validation_channel_tunes_on_out_of_fold_metrics",
    ),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: left out of the fast tier (tests/conftest.py SLOW)")


def pytest_collection_modifyitems(items):
    for item in items:
        module, _, name = item.nodeid.partition("::")
        if name.split("[")[0] in SLOW.get(module.removeprefix("tests/"), ()):
            item.add_marker(pytest.mark.slow)

def pytest_terminal_summary(terminalreporter):
    """tests/test_combinations.py's matrix: its size, what works, what is refused and why, and
    the seconds its tests took (setup, the trainings included, call and teardown), from the
    reports (each cell records what it is)."""
    kind, outcome, seconds = {}, {}, 0.0
    for key, reports in terminalreporter.stats.items():
        for report in reports:
            if "test_combinations.py::" not in getattr(report, "nodeid", "") \
                    or not hasattr(report, "when"):  # "deselected" holds the items themselves
                continue
            seconds += getattr(report, "duration", 0.0)
            properties = dict(getattr(report, "user_properties", ()))
            if "combination" in properties:
                kind[report.nodeid] = (properties["combination"], properties["refusal"])
            if report.when == "call" or key in ("failed", "error"):
                outcome.setdefault(report.nodeid, key)
    if not outcome:
        return
    good = [kind[n] for n, key in outcome.items() if key == "passed" and n in kind]
    refused = collections.Counter(reason for what, reason in good if what == "refused")
    failed = [n for n, key in outcome.items() if key != "passed"]
    write = terminalreporter.write_line
    write(f"matrix of combinations: {len(outcome)} cells, {seconds:.0f} s of test time: "
          f"{sum(what == 'works' for what, _ in good)} work, {sum(refused.values())} refused up "
          f"front with one line, {len(failed)} failed")
    for reason, n in refused.most_common():
        write(f"  refused ({n}): ...{reason}...")
    for nodeid in failed[:20]:
        write(f"  failed: {nodeid}")


@pytest.fixture(scope="session")
def breast_cancer_tree(tmp_path_factory) -> Path:
    """The demo's tree (breast-cancer data, case-study costs), trained once per session."""
    base = tmp_path_factory.mktemp("bc") / "ml"
    subprocess.run([sys.executable, str(REPO / "local_test" / "prepare_breast_cancer.py"), str(base)],
                   check=True, capture_output=True)
    result = run_train(base)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (base / "train.log").write_text(result.stdout + result.stderr)
    return base


class Mounts:
    """Real volumes for fault tests (as root, which CI is): a small tmpfs fills up as a disk does,
    a read-only bind mount refuses root too (chmod would not). Unmounted by the ``mounts`` fixture,
    last first, whatever the test did."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, text=True)
        self.points.append(Path(args[-1]))

    def tmpfs(self, directory: Path, size: str) -> Path:
        """A fresh tmpfs of ``size`` (e.g. "16k") at ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
        return directory

    def bind(self, source: Path, target: Path, read_only: bool = False) -> Path:
        """``source`` seen at ``target`` too (read-only there with ``read_only``)."""
        target.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(source), str(target))
        if read_only:  # a bind mount takes "ro" only on a remount
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True,
                           capture_output=True)
        return target

    def read_only(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return self.bind(directory, directory, read_only=True)

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.points.clear()


@pytest.fixture
def mounts():
    if os.geteuid() != 0:
        pytest.fail("this fault test mounts a tmpfs or a read-only bind mount: run it as root (CI "
                    "does; see tests/run.sh)")
    volumes = Mounts()
    try:
        yield volumes
    finally:
        volumes.unmount_all()
