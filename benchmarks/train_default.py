"""Train a bundled model: a recipe on all 24 RAVDESS actors.

Usage (from the repository root)::

    .venv/bin/python benchmarks/train_default.py --preset robust --set train.ensemble=5 --name robust-ensemble5
    .venv/bin/python benchmarks/train_default.py --preset fast --out src/ser/pretrained/fast

Writes ``--out`` (default ``src/ser/pretrained/default/``): model, config, labels,
metrics, card, checksums, and for encoder recipes the encoder. The model card
quotes the committed benchmark results
``benchmarks/results/accuracy_<name>_{si6,seed-split}.json`` (``<name>``: ``--name``,
else the preset) — the same recipe, evaluated on held-out clips.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from _harness import ROOT, Run, recipe_config, recipe_parser, setup_logging

WHISPER_LICENSE = ("Speech encoder: OpenAI Whisper base (MIT license, Copyright (c) 2022 OpenAI), frozen; this "
                   "folder carries its encoder weights ({}). ")
LICENSE = ("Trained on RAVDESS speech (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391; Zenodo 1188976), "
           "licensed CC BY-NC-SA 4.0: attribution, non-commercial use only, share-alike. These weights are "
           "derived from it and carry the same license.")


def main() -> int:
    parser = recipe_parser(__doc__, preset="robust", work=False)
    parser.add_argument("--out", default=str(ROOT / "src" / "ser" / "pretrained" / "default"))
    parser.add_argument("--card-only", action="store_true",
                        help="keep the trained weights; refresh the quoted evaluation results, the record of the "
                             "training data (speakers, file digests of --data), card and checksums")
    parser.add_argument("--add-adapted-head", action="store_true",
                        help="keep the trained inductive head byte for byte; train and add the speaker-adapted head")
    parser.add_argument("--add-class-stats", action="store_true",
                        help="keep both heads byte for byte; add the per-class statistics of the training speakers "
                             "that correct unlabelled speaker statistics for their emotion mix (speakers.npz)")
    args = parser.parse_args()
    setup_logging()
    run = Run("train")
    if args.add_class_stats:
        return add_class_stats(args, run)

    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_dataset
    from ser.inference import Recognizer
    from ser.training import describe_device, fit_final, train_recognizer, training_data_record

    name = args.name or args.preset
    evaluation = {}
    for protocol in ("si6", "seed-split"):
        path = Path(args.results) / f"accuracy_{name}_{protocol}.json"
        if path.exists():
            result = json.loads(path.read_text())
            evaluation[protocol] = {**result["pooled"], "source": f"benchmarks/results/{path.name}"}
    # The adapted head's protocols (the headline si6 comes from the accuracy benchmark above).
    for protocol in ("si6-prior", "si6-enrol", "si6-adapt-5", "si6-adapt-10", "si6-adapt-20", "si6-adapt-all",
                     "channel-shift"):
        path = Path(args.results) / f"adaptation_{name}_{protocol}.json"
        if path.exists():
            result = json.loads(path.read_text())
            evaluation[protocol] = {k: result[k] for k in ("accuracy", "uar", "macro_f1")} | {
                "source": f"benchmarks/results/{path.name}"}
    if args.card_only:
        from ser.modelfolder import model_card, write_checksums
        from ser.utils import atomic_write_text

        out = Path(args.out)
        rec = Recognizer.load(out)
        # What `ser evaluate --model` checks test data against (the bundled models: all 24 actors).
        metadata = rec.metadata | {"evaluation": evaluation,
                                   "training_data": training_data_record(load_dataset(args.data))}
        atomic_write_text(out / "metrics.json", json.dumps(metadata, indent=2) + "\n")
        atomic_write_text(out / "README.md", model_card(rec.config, metadata))
        write_checksums(out)
        print(f"{out}: card refreshed")
        return 0

    config = recipe_config(args)
    clips = load_dataset(args.data)
    start = time.perf_counter()
    if args.add_adapted_head:
        rec = Recognizer.load(args.out)
        config = rec.config.override({"speakers.adapted_head": True})
        adapted, _, norm = fit_final(clips, config, cache=FeatureCache(default_cache_dir()), adapted=True)
        metadata = rec.metadata | {"evaluation": evaluation}
        metadata["training"] = metadata["training"] | {
            "adapted_head": f"{time.perf_counter() - start:.0f} s; {run.command}"}
        out = rec.replace(config=config, metadata=metadata, adapted=adapted, speaker_norm=norm).save(
            args.out, history=json.loads((Path(args.out) / "history.json").read_text()), force=True)
        print(f"{out}: adapted head added in {time.perf_counter() - start:.0f} s")
        return 0
    rec, history = train_recognizer(clips, config, cache=FeatureCache(default_cache_dir()))
    train_s = time.perf_counter() - start
    metadata = {
        "training": {"data": "RAVDESS speech, all 24 actors", "clips": len(clips), "epochs": len(history["loss"]),
                     "train_s": round(train_s, 1), "device": describe_device(), "date": run.date,
                     "command": run.command},
        **rec.metadata,  # training_data and validation, recorded by train_recognizer
        "evaluation": evaluation,
        "data_license": (WHISPER_LICENSE.format(_encoder_weights(config.features))
                         if config.features.kind == "whisper" else "") + LICENSE,
    }
    out = rec.replace(metadata=metadata).save(args.out, history=history, force=True)
    drop_keras(out)
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"{out}: {size:.1f} MB, trained in {train_s:.0f} s on {os.cpu_count()} CPUs")
    return 0


def _encoder_weights(features) -> str:
    if features.encoder_graph not in ("none", "float32"):
        return f"encoder.onnx: {features.encoder_graph}, linear weights int8 per output channel"
    if features.encoder_graph == "float32":
        return "encoder.onnx: the published float16 values"
    return "encoder.npz: " + ("int8, rounded per output channel" if features.encoder_precision == "int8"
                              else "the published float16 values")


def drop_keras(out: Path) -> None:
    """Remove the Keras copies of the networks: a bundled model ships ONNX only (the core install has no
    TensorFlow), 11 MB less in every wheel."""
    from ser.modelfolder import write_checksums

    for path in out.glob("*.keras"):
        path.unlink()
    write_checksums(out)


def add_class_stats(args, run: Run) -> int:
    """Add :class:`ser.speakers.SpeakerNorm`'s class statistics to a model folder trained before they existed.

    They are learned from the model's own training clips (``--data``, all of them its training speakers), so
    nothing else is read; the prior, the enrolment correction and both networks stay as they are.
    """
    import dataclasses

    from ser.cache import FeatureCache, default_cache_dir
    from ser.dataset import load_dataset
    from ser.frontend import compute_features
    from ser.inference import Recognizer
    from ser.labels import encode
    from ser.modelfolder import SPEAKER_NORM, write_checksums
    from ser.speakers import SpeakerNorm
    from ser.training import enrol_mask, speakers_of
    from ser.utils import atomic_write_text

    out = Path(args.out)
    rec = Recognizer.load(out)
    rec.require_adapted_head()
    clips = load_dataset(args.data)
    x, _ = compute_features([c.path for c in clips], rec.config, copies=0, cache=FeatureCache(default_cache_dir()))
    y = encode([c.label for c in clips], rec.config.classes)
    fresh = SpeakerNorm.fit(x, speakers_of(clips), enrol_mask(y, rec.config.classes),
                            prior_weight=rec.config.speakers.prior_weight, labels=y, n_classes=len(rec.classes))
    norm = dataclasses.replace(rec.speaker_norm, class_offset=fresh.class_offset, class_var=fresh.class_var,
                               class_prior=fresh.class_prior)
    norm.save(out / SPEAKER_NORM)
    metadata = json.loads((out / "metrics.json").read_text())
    metadata["training"]["class_statistics"] = f"{len(clips)} clips; {run.command}"
    atomic_write_text(out / "metrics.json", json.dumps(metadata, indent=2) + "\n")
    write_checksums(out)
    print(f"{out}: class statistics added ({len(clips)} clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
