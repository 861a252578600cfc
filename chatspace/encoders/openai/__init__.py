"""OpenAI mode: embeddings from the OpenAI API or any OpenAI-compatible server (vLLM, TEI, infinity).

- `settings`: where and how to call it, from the environment or a `.env` file (the key stays hidden).
- `models`: what is known of the embedding models (dimensions, tokenizers, prices).
- `tokens`: token counts and truncation with the model's tokenizer, offline.
- `planning`: requests within the API's limits of inputs and tokens.
- `client`: the HTTP requests and their retry policy.
- `encoder`: the `Encoder` the workers run.
- `dry_run`: what a run would send and cost, without sending it.
"""
