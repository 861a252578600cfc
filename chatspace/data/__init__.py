"""Opening sources, sampling rows deterministically, and extracting the text to embed."""
