"""``w2s serve``: weak-to-strong search behind an OpenAI-compatible HTTP API (see
docs/serve.md). The app (:mod:`.app`) validates requests against the decoder registry
(:mod:`.schema`), a batcher (:mod:`.batcher`) runs compatible requests as one decoder call, and
:mod:`.stream` turns a decoder's committed text into stream chunks that are never taken back."""
