"""Options shared by every pipeline. Beam registers all PipelineOptions subclasses' flags in one
parser, so a flag is declared once, here, and each pipeline reads it with ``view_as``."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class CommonOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journeys")
        group.add_argument("--out", help="output folder (local or gs://)")
        group.add_argument("--torch_threads", type=int, default=1, help="torch threads per worker")
