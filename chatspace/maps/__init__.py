"""Pictures of runs: `reduce-embeddings` projects a sample of the vectors to 2-D/3-D (inputs.py reads
and samples, reduce.py projects), `visualize-embeddings` turns the points into an interactive map
(page.py, assets/, serve.py). Needs the `map` extra: `pip install 'chatspace[map]'`."""
