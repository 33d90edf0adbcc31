"""Dataflow, checked offline: every pipeline translated by the DataflowRunner with --dry_run true (no
credentials, no network, no job), and a template staged to the local GCS emulator.

What only a real project can show (workers starting, quotas, the container) is not tested here;
see docs/dataflow.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from journeys import cli
from pipelines import encode, export, extract, name

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW = ["--runner", "DataflowRunner", "--project", "demo-project", "--region", "europe-west1",
            "--temp_location", "gs://demo-bucket/tmp"]
DRY = [*DATAFLOW, "--dry_run", "true"]


def _translated(described: dict, out: Path, steps: set[str]) -> None:
    assert described["translated"] == "dry_run" and described["runner"] == "DataflowRunner"
    assert steps <= set(described["steps"]), set(described["steps"])
    assert described["transforms"] > len(described["steps"])
    (environment,) = described["environments"]
    assert environment["container_image"].endswith("_sdk:" + __import__("apache_beam").__version__)
    assert not out.exists()  # nothing written, not even the output folder
    print(f"\n{described['job_name']}: {len(described['steps'])} steps, {described['transforms']} transforms, "
          f"{described['wall_seconds']} s")


def test_extract_translates_into_a_dataflow_job_with_the_package_staged(small_sample, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # --setup_file ./setup.py, as the docs give it
    started = time.time()
    described = extract.run(["--events", small_sample["events"], "--items", small_sample["items"],
                             "--out", str(tmp_path / "out"), *DRY, "--setup_file", "./setup.py"])
    _translated(described, tmp_path / "out", {"ReadEvents", "ValidateEvents", "EmbedCatalogue", "GroupByShard",
                                              "ExtractJourneys", "WriteDeadLetters", "Publish"})
    # setup.py's source package, built and staged for the workers to install.
    assert "workflow.tar.gz" in described["environments"][0]["staged"]
    assert time.time() - started < 120


def test_a_delta_extraction_translates(journeys_run, small_sample, tmp_path):
    described = extract.run(["--events", small_sample["events"], "--items", small_sample["items"],
                             "--out", str(tmp_path / "out"), "--previous", journeys_run["out"], "--delta", *DRY])
    _translated(described, tmp_path / "out", {"PreviousCatalogue", "CarriedVectors", "EveryShard",
                                              "ExtractJourneys", "WriteCatalogue", "Publish"})


def test_name_translates(journeys_dir, tmp_path):
    described = name.run(["--journeys", journeys_dir, "--out", str(tmp_path / "out"), "--namer", "keywords", *DRY])
    _translated(described, tmp_path / "out", {"ReadJourneys", "GroupByUser", "CarryOver", "Name", "Publish"})


def test_export_translates(journeys_run, tmp_path):
    described = export.run(["--named", journeys_run["named"], "--out", str(tmp_path / "out"), *DRY])
    _translated(described, tmp_path / "out", {"ReadNamed", "ToLabels", "WriteLabels", "Publish"})


def test_encode_translates(journeys_dir, tmp_path):
    described = encode.run(["--journeys", journeys_dir, "--out", str(tmp_path / "out"), *DRY])
    _translated(described, tmp_path / "out", {"Read_journeys", "GroupByUser", "Encode", "Publish"})


def test_run_translates_each_step_and_ends_with_one_line(small_sample, tmp_path, capsys):
    code = cli.main(["run", "--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "out"), "--namer", "keywords", *DRY])
    assert code == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("journeys run: dry run: translated for the DataflowRunner, each step as its own job: ")
    for step in ("extract (40 steps", "name (", "export ("):
        assert step in line
    assert line.endswith("no job was submitted and nothing was written")
    assert not (tmp_path / "out").exists()
    print("\n" + line)


def test_a_dry_run_from_the_command_line_is_one_line_not_a_missing_summary(small_sample, tmp_path, capsys):
    code = cli.main(["extract", "--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "out"), *DRY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("journeys extract: dry run: translated for the DataflowRunner (40 steps")
    assert len(captured.out.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--dry_run", "true"], "--dry_run is for --runner DataflowRunner"),
    ([*DATAFLOW, "--dry_run", "maybe"], "--dry_run takes true or false"),
    (["--template_location", "gs://b/t"], "--template_location is for --runner DataflowRunner"),
])
def test_translation_options_are_refused_where_they_would_run_the_pipeline(small_sample, tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        extract.run(["--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "out"), *argv])


def test_run_refuses_one_template_for_three_pipelines(small_sample, tmp_path, capsys):
    assert cli.main(["run", "--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "out"), "--namer", "keywords", *DATAFLOW,
                     "--template_location", "gs://b/t"]) == 2
    assert "stage each step's template with its own command" in capsys.readouterr().err


def test_a_template_is_staged_to_the_gcs_emulator(gcs, small_sample, tmp_path, monkeypatch, capsys):
    import fsspec
    from apache_beam.internal.gcp import auth

    # Beam's GCS client talks to the emulator; no credentials are looked up (none exist here).
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setattr(auth._Credentials, "get_service_credentials", classmethod(lambda _cls, _options: None))
    monkeypatch.chdir(ROOT)
    fs = fsspec.filesystem("gcs")
    for table in ("events", "items"):
        fs.put(small_sample[table], f"{gcs}/in/{table}.parquet")
    template = f"{gcs}/templates/extract"
    started = time.time()
    code = cli.main(["extract", "--events", f"{gcs}/in/events.parquet", "--items", f"{gcs}/in/items.parquet",
                     "--out", f"{gcs}/out", "--runner", "DataflowRunner", "--project", "demo-project",
                     "--region", "europe-west1", "--temp_location", f"{gcs}/tmp", "--setup_file", "./setup.py",
                     "--template_location", template])
    seconds = time.time() - started
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"journeys extract: template staged at {template} (40 steps")
    with fs.open(template) as handle:
        job = json.load(handle)
    staged = sorted(path.rsplit("/", 1)[-1] for path in fs.find(f"{gcs}/tmp"))
    assert {"pipeline.pb", "workflow.tar.gz", "pickled_main_session"} <= set(staged), staged
    assert job["environment"]["sdkPipelineOptions"]["options"]["template_location"] == template
    assert not fs.exists(f"{gcs}/out")  # nothing ran
    print(f"\ntemplate staged in {seconds:.1f} s: {template} ({fs.size(template):,} bytes); staged files: "
          + ", ".join(staged))


def test_a_remote_job_is_waited_for_and_its_summary_read_where_it_wrote_it(journeys_run, tmp_path, capsys):
    # The runner returns before the job has run; the manifest exists only once it is waited for.
    assert cli.main(["export", "--named", journeys_run["named"], "--out", str(tmp_path / "export"),
                     "--runner", "deferred_runner.DeferredRunner"]) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((tmp_path / "export" / "_manifest.json").read_text())
    assert printed["rows"] == manifest["rows"] == journeys_run["printed"]["export"]["rows"]


def test_a_failed_remote_job_stops_the_run_with_one_line(small_sample, tmp_path, capsys):
    code = cli.main(["run", "--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "out"), "--namer", "keywords",
                     "--runner", "deferred_runner.FailingRunner"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("journeys run: error: the deferred_runner.FailingRunner job ended in state FAILED: nothing "
                          "was published to ") and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "named").exists()  # the next step never started
