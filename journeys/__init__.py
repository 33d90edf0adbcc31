"""journeys: users' activity histories -> persistent, named interest journeys.

The Python API (``journeys.api``): ``make_sample``, ``extract``, ``name``, ``export`` and
``options``. Importing the package is light: Beam, torch and the pipelines load on the first call.
"""

from journeys.api import (
    ExportResult,
    ExtractResult,
    NameResult,
    Sample,
    Timeline,
    export,
    extract,
    make_sample,
    name,
    options,
)

__all__ = ["ExportResult", "ExtractResult", "NameResult", "Sample", "Timeline", "export", "extract", "make_sample",
           "name", "options"]
