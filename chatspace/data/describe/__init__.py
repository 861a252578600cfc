"""What a dataset holds, found without downloading its data: `chatspace describe-dataset`.

What it finds -- splits, features and their types, row counts, data files with their sizes, and the
fields worth embedding (string columns and conversation-shaped columns, with length statistics from a
small sample) -- is printed and written under the output root (`chatspace.store.datasets`).

- `local`: a local path, opened the way `embed-hf` opens it; only the sample rows are read.
- `hub`: a Hugging Face Hub dataset, from its metadata and Parquet footers, with a streamed sample.
- `findings`: the parts every description has, and column types inferred from JSON values.
- `render`: the printed summary.
"""

from chatspace.data.describe.report import FORMAT, DatasetReport, check_request, inspect_dataset

__all__ = ["FORMAT", "DatasetReport", "check_request", "inspect_dataset"]
