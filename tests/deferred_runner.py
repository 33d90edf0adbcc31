"""Runners that stand in for a remote one (Dataflow) in tests: ``run`` returns at once with the job
still running, as a remote runner's does; the job runs (on the local runner) or fails only when it
is waited for. Given as ``--runner deferred_runner.DeferredRunner`` (Beam imports it by name)."""

from __future__ import annotations

from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState


class DeferredResult(PipelineResult):
    def __init__(self, pipeline, options, fail: bool):
        super().__init__(PipelineState.RUNNING)
        self._pipeline, self._options, self._fail = pipeline, options, fail

    def wait_until_finish(self, duration=None):
        if self._fail:
            self._state = PipelineState.FAILED
            return self._state
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        FnApiRunner().run_pipeline(self._pipeline, self._options).wait_until_finish()
        self._state = PipelineState.DONE
        return self._state


class DeferredRunner(PipelineRunner):
    def run_pipeline(self, pipeline, options):
        return DeferredResult(pipeline, options, fail=False)


class FailingRunner(PipelineRunner):
    def run_pipeline(self, pipeline, options):
        return DeferredResult(pipeline, options, fail=True)
