"""Drop-in for ``python -m espnet2.bin.whisper_export_vocabulary`` that works on today's openai-whisper.

ESPnet's own script calls the Hugging Face tokenizer that openai-whisper dropped in 20230314
(``espnet_peft.whisper.hf_tokenizer_view``); this one gives it that API first, then runs it unchanged:

    python -m espnet_peft.bin.whisper_export_vocabulary --whisper_model whisper_en --output data/token_list/tokens.txt
"""

from __future__ import annotations

from typing import Optional, Sequence

from espnet_peft.whisper import offline


def main(cmd: Optional[Sequence[str]] = None) -> None:
    offline.install()
    from espnet2.bin import whisper_export_vocabulary as stock

    stock.main(cmd)


if __name__ == "__main__":
    main()
